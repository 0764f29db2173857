"""The reports' pages: the audit log, verification, usage and background exports."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from audit.models import AuditEvent, Checkpoint
from core.errors import PortalError
from reports.exports import queue_export
from reports.filters import AuditEventFilterSet
from reports.models import ExportJob
from reports.usage import GROUPS, parse_period, usage_report
from reports.verification import verify_and_record
from tenancy.permissions import role_required
from tenancy.roles import OPERATORS


@role_required(OPERATORS)
def event_list(request):
    """The audit log with the same filters as the API (tenant, user, verb, object, time range)."""
    filterset = AuditEventFilterSet(request.GET, queryset=AuditEvent.objects.all())
    events = filterset.qs if filterset.is_valid() else AuditEvent.objects.none()
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request, "reports/audit_events.html", {"filterset": filterset, "page": page, "query": query.urlencode()}
    )


@role_required(OPERATORS)
def audit_verify(request):
    """Verify the audit chain on demand (POST; audited) and show the result."""
    result = verify_and_record(request.user) if request.method == "POST" else None
    checkpoints = Checkpoint.objects.order_by("-seq")[:5]
    return render(request, "reports/audit_verify.html", {"result": result, "checkpoints": checkpoints})


@role_required(OPERATORS)
def usage_page(request):
    group_by = request.GET.get("group_by", "tenant")
    if group_by not in GROUPS:
        group_by = "tenant"
    try:
        start, end, label = parse_period(request.GET)
    except PortalError as exc:
        messages.error(request, exc.message)
        start, end, label = parse_period({})
    lines = usage_report(start, end, group_by)
    peak = max((line.gpu_hours for line in lines), default=0) or 1
    rows = [{"line": line, "percent": round(100 * float(line.gpu_hours) / float(peak))} for line in lines]
    totals = {
        "desktops": sum(x.desktops for x in lines),
        "gpu_hours": sum(x.gpu_hours for x in lines),
        "fb": sum(x.framebuffer_gib_hours for x in lines),
    }
    return render(
        request,
        "reports/usage.html",
        {
            "rows": rows,
            "group_by": group_by,
            "groups": GROUPS,
            "label": label,
            "start": start,
            "end": end,
            "totals": totals,
            "query": request.GET.urlencode(),
        },
    )


@login_required
def export_jobs(request):
    """My background exports: queue one (POST) or download a finished one."""
    if request.method == "POST":
        try:
            queue_export(
                request.user,
                request.POST.get("kind", ""),
                request.POST.get("format", "csv"),
                {k: v for k, v in request.POST.items() if k not in ("kind", "format", "csrfmiddlewaretoken")},
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Export queued: it will be listed here when it is ready.")
        return redirect("export-jobs")
    jobs = ExportJob.objects.filter(requested_by_id=request.user.pk)[:50]
    return render(request, "reports/export_jobs.html", {"jobs": jobs})
