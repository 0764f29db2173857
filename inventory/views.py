from datetime import timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.errors import PortalError
from inventory.choices import HostState
from inventory.forms import DrainForm, HostEditForm, HostRegisterForm, MaintenanceForm
from inventory.models import Host, VGPUProfile
from inventory.services import hosts
from inventory.services.probe import probe_host
from inventory.services.utilization import history
from tenancy.permissions import role_required
from tenancy.roles import ADMINS, EVERYONE, OPERATORS


@role_required(OPERATORS)
def host_detail(request, name):
    host = get_object_or_404(Host, name=name)
    gpus = list(host.gpus.select_related("current_profile").order_by("pci_address"))
    since = timezone.now() - timedelta(minutes=30)
    series = {str(g.pk): history(g.pk, since=since) for g in gpus}
    context = {"host": host, "gpus": gpus, "history": series, "drain_form": DrainForm()}
    return render(request, "inventory/host_detail.html", context)


@require_POST
@role_required(ADMINS)
def host_state(request, name, state):
    """Maintenance (with the reason its desktops' owners see) or back online."""
    host = get_object_or_404(Host, name=name)
    if state == HostState.MAINTENANCE and not MaintenanceForm(request.POST).is_valid():
        messages.error(request, "Say why the host goes into maintenance: its desktops' owners are shown the reason.")
        return redirect("inventory:host-detail", name=host.name)
    try:
        hosts.set_host_state(host, state, actor=request.user, reason=request.POST.get("reason", ""))
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{host.name} is now {state}.")
    return redirect("inventory:host-detail", name=host.name)


HOSTS_PER_PAGE = 100
RETIRED_SHOWN = 50


@role_required(OPERATORS)
def host_list(request):
    """The hosts in service with their state and why, a page at a time (search by name, filter by state),
    and the retired ones apart (kept for history; the latest shown)."""
    query = (request.GET.get("q") or "").strip()[:100]
    state = request.GET.get("state", "")
    listed = Host.objects.annotate(gpu_count=Count("gpus")).order_by("name")
    active = listed.active()
    if query:
        active = active.filter(name__icontains=query)
    if state in HostState.values and state != HostState.RETIRED:
        active = active.filter(state=state)
    else:
        state = ""
    page = Paginator(active, HOSTS_PER_PAGE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    context = {
        "hosts": page.object_list,
        "page": page,
        "query": params.urlencode(),
        "filters": {"q": query, "state": state, "active": bool(query or state)},
        "states": [(s.value, s.label) for s in HostState if s != HostState.RETIRED],
        "retired": listed.retired().order_by("-retired_at", "name")[:RETIRED_SHOWN],
        "retired_count": Host.objects.retired().count(),
    }
    return render(request, "inventory/host_list.html", context)


@role_required(ADMINS)
def host_new(request):
    """Register a host: "Test connection" runs discovery and shows what it found, saving nothing;
    "Register" saves it (through ``hosts.register_host``) and reads it at once."""
    form = HostRegisterForm(request.POST or None)
    probed = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if "register" in request.POST:
            try:
                host, summary = hosts.register_host(data, actor=request.user)
            except PortalError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"{host.name} is registered: {summary}")
                return redirect("inventory:host-detail", name=host.name)
        else:
            probed = probe_host(data["libvirt_uri"], data["telemetry_source"])
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "inventory/host_new.html", {"form": form, "probed": probed}, status=status)


@role_required(ADMINS)
def host_edit(request, name):
    """Console relay, telemetry source and notes of a host in service."""
    host = get_object_or_404(Host.objects.active(), name=name)
    form = HostEditForm(request.POST or None, instance=Host.objects.get(pk=host.pk))
    if request.method == "POST" and form.is_valid():
        try:
            hosts.update_host(host, form.cleaned_data, actor=request.user)
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{host.name} is saved.")
            return redirect("inventory:host-detail", name=host.name)
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "inventory/host_edit.html", {"form": form, "host": host}, status=status)


@require_POST
@role_required(ADMINS)
def host_retire(request, name):
    host = get_object_or_404(Host, name=name)
    try:
        hosts.retire_host(host, actor=request.user)
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("inventory:host-detail", name=host.name)
    messages.success(request, f"{host.name} is retired: kept with its history, out of service for good.")
    return redirect("inventory:host-list")


@role_required(EVERYONE)
def profiles(request):
    """The vGPU profile catalog, grouped by board."""
    boards = {}
    for profile in VGPUProfile.objects.annotate(gpus_running=Count("gpus")):
        boards.setdefault(profile.board, []).append(profile)
    return render(request, "inventory/profiles.html", {"boards": boards})
