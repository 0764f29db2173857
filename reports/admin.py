from django.contrib import admin

from audit.models import AuditEvent
from core.admin import ReadOnly


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnly, admin.ModelAdmin):
    """Read-only: the admin can browse the trail but never add, change or delete it."""

    list_display = ("occurred_at", "actor_username", "tenant_name", "verb", "object_type", "object_id", "source_ip")
    list_filter = ("verb", "object_type")
    search_fields = ("actor_username", "tenant_name", "object_id", "object_repr", "request_id")
    date_hierarchy = "occurred_at"
