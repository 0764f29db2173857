from django.contrib import admin

from consoles.models import ConsoleSession
from core.admin import ReadOnly


@admin.register(ConsoleSession)
class ConsoleSessionAdmin(ReadOnly, admin.ModelAdmin):
    """Who had which console, from where, for how long: a record, not something to edit."""

    list_display = ("desktop", "user", "source_ip", "opened_at", "closed_at", "close_code", "close_reason")
    list_filter = ("close_code",)
    search_fields = ("desktop__name", "user__username", "source_ip")
    list_select_related = ("desktop", "user")
