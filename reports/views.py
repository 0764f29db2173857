"""The reports' pages: the audit log, verification, usage and background exports."""

from datetime import UTC

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import urlencode

from audit.chain import inspect_event
from audit.models import AuditEvent, Checkpoint
from core.datetimes import InvalidInstant, parse_instant
from core.errors import PortalError
from reports.changes import change_lines
from reports.exports import queue_export
from reports.filters import AuditLogFilterSet
from reports.keyset import CURSOR_PARAMS, KeysetPage, keyset_page, read_cursor
from reports.models import ExportJob
from reports.usage import GROUPS, parse_period, usage_report, usage_series
from reports.verification import verify_and_record
from tenancy.permissions import role_required
from tenancy.roles import OPERATORS


def shareable(params) -> dict:
    """The filters given, for the page's links and exports: empty ones dropped, and a local date-time
    (the datetime-local inputs) as the UTC instant it meant, so the address, and an export's manifest,
    mean the same wherever they are opened."""
    filters = {k: v for k, v in params.items() if k not in CURSOR_PARAMS and v.strip()}
    for name in ("since", "until"):
        if name in filters:
            try:
                filters[name] = parse_instant(filters[name]).astimezone(UTC).isoformat().replace("+00:00", "Z")
            except InvalidInstant:
                pass  # the filter form says what is wrong with it
    return filters


#: Events per page of the audit log.
PAGE_SIZE = 50


@role_required(OPERATORS)
def event_list(request):
    """The audit log, newest first, with the API's filters as widgets; paged by position (``?before=`` /
    ``?after=``, reports.keyset), so any page costs what the first does. Each change is shown as
    ``field: before → after`` (reports.changes)."""
    filterset = AuditLogFilterSet(request.GET, queryset=AuditEvent.objects.all())
    page, error = KeysetPage(), None
    try:
        before, after = read_cursor(request.GET)
    except PortalError as exc:
        error = exc.message
    else:
        if filterset.is_valid():
            page = keyset_page(filterset.qs, before=before, after=after, size=PAGE_SIZE)
    filters = shareable(request.GET)
    context = {
        "filterset": filterset,
        "main_fields": [filterset.form[name] for name in AuditLogFilterSet.MAIN],
        "more_fields": [f for f in filterset.form if f.name not in AuditLogFilterSet.MAIN],
        "more_open": any(filters.get(name) for name in filterset.form.fields if name not in AuditLogFilterSet.MAIN),
        "events": [(event, change_lines(event.before, event.after)) for event in page.rows],
        "page": page,
        "query": urlencode(filters),
        "filtered": bool(filters),
        "error": error,
    }
    status = 400 if error or not filterset.is_valid() else 200
    return render(request, "reports/audit_events.html", context, status=status)


@role_required(OPERATORS)
def event_detail(request, seq: int):
    """One event: every field, its change, its chain position and what can be verified about it now."""
    event = get_object_or_404(AuditEvent, seq=seq)
    return render(
        request,
        "reports/audit_event.html",
        {"event": event, "changes": change_lines(event.before, event.after), "state": inspect_event(event)},
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
    series = usage_series(start, end)
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
            "series": series,
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
