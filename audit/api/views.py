from rest_framework import viewsets

from audit.api.filters import AuditEventFilterSet
from audit.api.serializers import AuditEventSerializer
from audit.models import AuditEvent
from portal.api import RolePermission

# audit imports neither inventory nor allocations: role names are plain strings here.
READERS = ("platform-admin", "auditor")


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, newest first. Auditors and platform admins read it; nobody writes it."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = READERS, ()
    ordering_fields = ["occurred_at", "id"]
