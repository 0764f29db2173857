from django.contrib import admin

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the admin can browse the trail but never add, change or delete it."""

    list_display = ("occurred_at", "actor_username", "tenant_name", "verb", "object_type", "object_id", "source_ip")
    list_filter = ("verb", "object_type")
    search_fields = ("actor_username", "tenant_name", "object_id", "object_repr", "request_id")
    date_hierarchy = "occurred_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
