from django.db.models import Count, Prefetch
from django.shortcuts import get_object_or_404, render

from inventory.models import GPU, Host, VGPUProfile
from portal.ui import role_required

OPERATORS = ("platform-admin", "auditor")


@role_required(*OPERATORS)
def overview(request):
    """Every host with its state, heartbeat and GPUs as tiles."""
    gpus = GPU.objects.select_related("current_profile").order_by("pci_address")
    hosts = Host.objects.prefetch_related(Prefetch("gpus", queryset=gpus)).order_by("name")
    return render(request, "inventory/overview.html", {"hosts": hosts})


@role_required(*OPERATORS)
def host_detail(request, name):
    host = get_object_or_404(Host, name=name)
    gpus = host.gpus.select_related("current_profile").order_by("pci_address")
    return render(request, "inventory/host_detail.html", {"host": host, "gpus": gpus})


@role_required("platform-admin", "auditor", "tenant-member")
def profiles(request):
    """The vGPU profile catalog, grouped by board."""
    boards = {}
    for profile in VGPUProfile.objects.annotate(gpus_running=Count("gpus")):
        boards.setdefault(profile.board, []).append(profile)
    return render(request, "inventory/profiles.html", {"boards": boards})
