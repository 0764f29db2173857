"""Bookings in the admin: read-only (they are made and cancelled through ``bookings.services``); planned
host maintenance, which the future-fit check respects, is written through the audited admin."""

from django.contrib import admin

from bookings.models import Booking, MaintenanceWindow, Occurrence
from core.admin import AuditedAdmin, ReadOnly


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
