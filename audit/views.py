from django.core.paginator import Paginator
from django.shortcuts import render

from audit.api.filters import AuditEventFilterSet
from audit.models import AuditEvent
from portal.ui import role_required


@role_required("platform-admin", "auditor")
def event_list(request):
    """The audit log with the same filters as the API (tenant, user, verb, object, time range)."""
    filterset = AuditEventFilterSet(request.GET, queryset=AuditEvent.objects.all())
    events = filterset.qs if filterset.is_valid() else AuditEvent.objects.none()
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/event_list.html", {"filterset": filterset, "page": page, "query": query.urlencode()})
