"""Server-rendered pages. They authenticate, scope, call the same services as the API, and render;
service errors become messages on the page."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from allocations.choices import HOLDING_STATUSES, QuotaRequestStatus
from allocations.forms import DecisionForm, DesktopRequestForm, ExtendForm, QuotaIncreaseForm
from allocations.models import Desktop, QuotaRequest
from allocations.services import idle, lifecycle, quotas, suspend
from allocations.services.access import get_desktop_for, may_act_on
from allocations.services.availability import offers_for
from allocations.services.quotas import usage_of
from allocations.services.request import request_desktop
from audit.models import AuditEvent
from core.errors import PortalError
from inventory.models import GPU, Host
from inventory.services.utilization import history
from tenancy.models import Tenant
from tenancy.permissions import role_required
from tenancy.roles import ACTORS, ADMINS, EVERYONE, MEMBERS, OPERATORS, roles_of


def _usage_rows(tenant: Tenant) -> list[dict]:
    quota = tenant.quota
    usage = usage_of(tenant, quota)
    rows = [
        {"label": "Desktops", "used": usage.desktops, "allowed": quota.max_desktops, "unit": ""},
        {"label": "Framebuffer", "used": usage.framebuffer_mib, "allowed": quota.max_framebuffer_mib, "unit": "MiB"},
    ]
    for limit in quota.profile_limits.select_related("profile"):
        rows.append(
            {
                "label": limit.profile.name,
                "used": usage.per_profile.get(limit.profile.name, 0),
                "allowed": limit.max_instances,
                "unit": "",
            }
        )
    for row in rows:
        row["percent"] = min(100, round(100 * row["used"] / row["allowed"])) if row["allowed"] else 100
    return rows


@login_required
def home(request):
    """Each role's landing page: end users their desktops and quota; operators the fleet and the queue."""
    roles = roles_of(request.user)
    context = {"roles": roles}
    if roles.tenant_ids:
        tenants = Tenant.objects.filter(pk__in=roles.tenant_ids).select_related("quota").order_by("name")
        context["tenants"] = [{"tenant": t, "usage": _usage_rows(t)} for t in tenants]
        context["desktops"] = (
            Desktop.objects.visible_to(request.user)
            .filter(status__in=HOLDING_STATUSES)
            .select_related("profile", "template")
            .order_by("-requested_at")
        )
        context["past_desktops"] = (
            Desktop.objects.visible_to(request.user)
            .exclude(status__in=HOLDING_STATUSES)
            .select_related("profile")
            .order_by("-requested_at")[:5]
        )
        context["quota_requests"] = QuotaRequest.objects.visible_to(request.user).select_related("tenant")[:5]
    if roles.sees_everything:
        context["host_states"] = dict(Host.objects.active().values_list("state").annotate(n=Count("id")).order_by())
        context["gpu_modes"] = dict(GPU.objects.present().values_list("mode").annotate(n=Count("id")).order_by())
        context["host_count"] = sum(context["host_states"].values())
        context["gpu_count"] = sum(context["gpu_modes"].values())
        context["tenant_count"] = Tenant.objects.count()
        context["running_count"] = Desktop.objects.filter(status__in=HOLDING_STATUSES).count()
        context["pending_requests"] = QuotaRequest.objects.filter(status=QuotaRequestStatus.PENDING).count()
        context["recent_events"] = AuditEvent.objects.all()[:8]
    return render(request, "allocations/home.html", context)


def _member_tenant(request) -> Tenant:
    """The tenant a member's page acts for: the one named (``tenant``), which must be one of theirs (another
    tenant's id is "not found", never quietly replaced by their own), or their first by name."""
    tenant_ids = roles_of(request.user).tenant_ids
    wanted = request.POST.get("tenant") or request.GET.get("tenant")
    if wanted:
        if not wanted.isdigit() or int(wanted) not in tenant_ids:
            raise Http404("No such tenant among yours.")
        return Tenant.objects.select_related("quota").get(pk=int(wanted))
    return Tenant.objects.select_related("quota").filter(pk__in=tenant_ids).order_by("name").first()


def _in_words(exc: ValidationError) -> str:
    """A model's full_clean refusal as one message for the page (it is never a 500)."""
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
    return " ".join(exc.messages)


@role_required(MEMBERS)
def desktop_new(request):
    """The templates offered now, which ones fit and why the others don't, and the request form."""
    tenant = _member_tenant(request)
    form = DesktopRequestForm(request.POST or None, tenant=tenant)
    if request.method == "POST" and form.is_valid():
        try:
            desktop = request_desktop(
                actor=request.user,
                template_id=form.cleaned_data["template"].pk,
                duration_hours=form.cleaned_data["duration_hours"],
                name=form.cleaned_data["name"],
                tenant_id=tenant.pk,
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{desktop.name} requested: it is being started on a GPU host.")
            return redirect("desktop-page", pk=desktop.pk)
    return render(
        request,
        "allocations/desktop_new.html",
        {"form": form, "tenant": tenant, "offers": offers_for(tenant), "usage": _usage_rows(tenant)},
    )


def _desktop_for(request, pk, *, acting: bool = False) -> Desktop:
    try:
        return get_desktop_for(request.user, pk, acting=acting)
    except PortalError as exc:
        raise Http404(exc.message) from None


#: The parts of pages that change with a desktop's status, each rendered alone by ``desktop_part`` (for
#: live.js to swap in when the websocket says the desktop changed) and included by its page.
DESKTOP_PARTS = {
    "row": "allocations/_desktop_row.html",  # a row of the home page's "My desktops"
    "head": "allocations/_desktop_head.html",  # the desktop page's name, status and reason
    "summary": "allocations/_desktop_summary.html",  # expiry, console and the actions the status allows
    "timeline": "allocations/_desktop_timeline.html",
}


def _desktop_context(request, desktop: Desktop) -> dict:
    """What the desktop page and each of ``DESKTOP_PARTS`` render from: one context, so a part fetched
    alone shows what the page shows."""
    return {
        "desktop": desktop,
        "timeline": AuditEvent.objects.about(desktop).order_by("occurred_at", "id"),
        "can_act": may_act_on(request.user, desktop),
        "idle": idle.assess(desktop),
    }


@role_required(EVERYONE)
def desktop_detail(request, pk):
    desktop = _desktop_for(request, pk)
    samples = []
    if desktop.mdev_uuid and desktop.started_at:
        gpu = desktop.gpus.first()
        samples = history(
            gpu.pk, mdev_uuid=str(desktop.mdev_uuid), since=max(desktop.started_at, timezone.now() - timedelta(hours=2))
        )
    return render(
        request,
        "allocations/desktop_detail.html",
        {**_desktop_context(request, desktop), "samples": samples, "extend_form": ExtendForm()},
    )


@login_required
def tenant_usage_part(request, pk):
    """Fragment (htmx): the home page's quota card of one of the person's tenants, as the home page
    renders it; live.js fetches it again when one of that tenant's desktops it is told of changes."""
    if pk not in roles_of(request.user).tenant_ids:
        raise Http404("No such tenant")
    tenant = get_object_or_404(Tenant.objects.select_related("quota"), pk=pk)
    return render(request, "allocations/_tenant_usage.html", {"row": {"tenant": tenant, "usage": _usage_rows(tenant)}})


@role_required(EVERYONE)
def desktop_part(request, pk, part):
    """Fragment (htmx): one of ``DESKTOP_PARTS`` of a desktop the user may see, as its page renders it."""
    if part not in DESKTOP_PARTS:
        raise Http404("No such part")
    desktop = _desktop_for(request, pk)
    return render(request, DESKTOP_PARTS[part], _desktop_context(request, desktop))


@require_POST
@role_required(ACTORS)
def desktop_action(request, pk, action):
    desktop = _desktop_for(request, pk, acting=True)
    try:
        if action == "release":
            lifecycle.release_desktop(desktop, actor=request.user)
            messages.success(request, f"{desktop.name} is being released.")
        elif action == "resume":
            suspend.request_resume(desktop, actor=request.user)
            messages.success(request, f"{desktop.name} is resuming.")
        elif action == "reboot":
            lifecycle.reboot_desktop(desktop, actor=request.user)
            messages.success(request, f"{desktop.name} is rebooting.")
        elif action == "extend":
            form = ExtendForm(request.POST)
            if not form.is_valid():
                messages.error(request, "Say by how many hours (1 or more).")
            else:
                lifecycle.extend_desktop(desktop, form.cleaned_data["hours"], actor=request.user)
                messages.success(request, f"{desktop.name} extended by {form.cleaned_data['hours']} h.")
        else:
            raise Http404("No such action")
    except PortalError as exc:
        messages.error(request, exc.message)
    return redirect("desktop-page", pk=desktop.pk)


@role_required(MEMBERS)
def quota_request_new(request):
    tenant = _member_tenant(request)
    form = QuotaIncreaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            quotas.request_quota_increase(actor=request.user, tenant=tenant, changes=data, reason=data.pop("reason"))
        except PortalError as exc:
            messages.error(request, exc.message)
        except ValidationError as exc:
            messages.error(request, _in_words(exc))
        else:
            messages.success(request, "Your request was sent to the platform admins.")
            return redirect("home")
    return render(
        request, "allocations/quota_request_new.html", {"form": form, "tenant": tenant, "usage": _usage_rows(tenant)}
    )


@role_required(OPERATORS)
def quota_request_queue(request):
    pending = (
        QuotaRequest.objects.filter(status=QuotaRequestStatus.PENDING)
        .select_related("tenant__quota", "requested_by")
        .order_by("created_at")
    )
    decided = QuotaRequest.objects.exclude(status=QuotaRequestStatus.PENDING).select_related(
        "tenant", "requested_by", "decided_by"
    )[:20]
    return render(
        request,
        "allocations/quota_requests.html",
        {"pending": pending, "decided": decided, "decision_form": DecisionForm()},
    )


@require_POST
@role_required(ADMINS)
def quota_request_decide(request, pk, decision):
    quota_request = get_object_or_404(QuotaRequest, pk=pk)
    # One rule for the note, the service's (at most MAX_REASON_CHARS, refused in words as for the API):
    # the page's DecisionForm only mirrors it in the browser.
    reason = request.POST.get("reason", "")
    try:
        if decision == "approve":
            quotas.approve_quota_request(quota_request.pk, actor=request.user, reason=reason)
            messages.success(request, f"Approved: {quota_request.tenant}'s quota was raised.")
        elif decision == "reject":
            quotas.reject_quota_request(quota_request.pk, actor=request.user, reason=reason)
            messages.success(request, f"Rejected {quota_request.tenant}'s request.")
        else:
            raise Http404("No such decision")
    except PortalError as exc:
        messages.error(request, exc.message)
    except ValidationError as exc:
        messages.error(request, _in_words(exc))
    return redirect("quota-requests")


@role_required(OPERATORS)
def host_desktops(request, name):
    """Fragment (htmx): the desktops on one host, for the host page that inventory renders."""
    desktops = (
        Desktop.objects.filter(host__name=name, status__in=HOLDING_STATUSES)
        .select_related("owner", "tenant", "profile")
        .order_by("-requested_at")
    )
    return render(request, "allocations/_host_desktops.html", {"desktops": desktops})
