from datetime import timedelta

from django.contrib import messages
from django.db.models import Count, Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.errors import PortalError
from inventory.models import GPU, Host, VGPUProfile
from inventory.services import hosts
from inventory.services.utilization import history
from tenancy.permissions import role_required
from tenancy.roles import ADMINS, EVERYONE, OPERATORS


@role_required(OPERATORS)
def overview(request):
    """Every host with its state, heartbeat and GPUs as tiles."""
    gpus = GPU.objects.select_related("current_profile").order_by("pci_address")
    hosts = Host.objects.prefetch_related(Prefetch("gpus", queryset=gpus)).order_by("name")
    return render(request, "inventory/overview.html", {"hosts": hosts})


@role_required(OPERATORS)
def host_detail(request, name):
    host = get_object_or_404(Host, name=name)
    gpus = list(host.gpus.select_related("current_profile").order_by("pci_address"))
    since = timezone.now() - timedelta(minutes=30)
    series = {str(g.pk): history(g.pk, since=since) for g in gpus}
    return render(request, "inventory/host_detail.html", {"host": host, "gpus": gpus, "history": series})


@require_POST
@role_required(ADMINS)
def host_state(request, name, state):
    host = get_object_or_404(Host, name=name)
    try:
        hosts.set_host_state(host, state, actor=request.user, reason=request.POST.get("reason", ""))
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{host.name} is now {state}.")
    return redirect("inventory:host-detail", name=host.name)


@role_required(EVERYONE)
def profiles(request):
    """The vGPU profile catalog, grouped by board."""
    boards = {}
    for profile in VGPUProfile.objects.annotate(gpus_running=Count("gpus")):
        boards.setdefault(profile.board, []).append(profile)
    return render(request, "inventory/profiles.html", {"boards": boards})
