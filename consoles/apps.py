from django.apps import AppConfig


class ConsolesConfig(AppConfig):
    name = "consoles"
    verbose_name = "Desktop consoles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.contrib.auth.signals import user_logged_out

        user_logged_out.connect(close_consoles_on_logout, dispatch_uid="consoles.close_on_logout")


def close_consoles_on_logout(sender, request, user, **kwargs):
    """Signing out ends that person's open consoles (4003), in every window."""
    if user is None:
        return
    from core import live

    live.publish(live.console_user_group(user.pk), "console.close", {"code": 4003, "reason": "You signed out."})
