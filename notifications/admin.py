from django.contrib import admin

from core.admin import ReadOnly
from notifications.models import Delivery, Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("created_at", "recipient", "kind", "title", "in_portal", "read_at")
    list_filter = ("kind", "in_portal")
    search_fields = ("title", "recipient__username")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly, admin.ModelAdmin):
    """The mail queue (its own page, /notifications/deliveries/, is where admins send mail again)."""

    list_display = ("created_at", "to_address", "kind", "status", "attempts", "next_attempt_at", "last_error")
    list_filter = ("status", "kind")
    search_fields = ("to_address",)
