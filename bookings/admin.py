"""Bookings in the admin: read-only (they are made and cancelled through ``bookings.services``); planned
host maintenance, which the future-fit check respects, is written through the audited admin."""

from django.contrib import admin

from bookings.models import Booking, GroupBooker, MaintenanceWindow, Occurrence
from core.admin import AuditedAdmin, ReadOnly
from tenancy.roles import is_platform_admin


@admin.register(GroupBooker)
class GroupBookerAdmin(AuditedAdmin):
    """Who books for groups (teachers, project leads), per tenant: granted by platform admins."""

    list_display = ("user", "tenant", "granted_at")
    list_filter = ("tenant",)
    list_select_related = ("user", "tenant")

    def _platform_admin(self, request) -> bool:
        return is_platform_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return self._platform_admin(request)

    def has_module_permission(self, request):
        return self._platform_admin(request)

    def has_add_permission(self, request):
        return self._platform_admin(request)

    def has_change_permission(self, request, obj=None):
        return self._platform_admin(request)

    def has_delete_permission(self, request, obj=None):
        return self._platform_admin(request)


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(AuditedAdmin):
    list_display = ("host", "start", "end", "reason")
    list_select_related = ("host",)


class OccurrenceInline(admin.TabularInline):
    model = Occurrence
    fields = ("start", "end", "state", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Booking)
class BookingAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("__str__", "tenant", "template", "owner", "count", "start", "rrule", "state")
    list_filter = ("state", "tenant")
    list_select_related = ("tenant", "template", "owner")
    fields = ("title", "tenant", "template", "owner", "count", "start", "end", "rrule", "state")
    readonly_fields = fields
    inlines = [OccurrenceInline]
