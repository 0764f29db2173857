from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """What people are told about their desktops, quota requests and hosts: in the portal and by mail (issue 17)."""

    name = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from notifications import events

        events.connect()  # every audited change passes there (notifications.events)
