from django.apps import AppConfig


class ConsolesConfig(AppConfig):
    name = "consoles"
    verbose_name = "Desktop consoles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.contrib.auth.signals import user_logged_out

        user_logged_out.connect(close_consoles_on_logout, dispatch_uid="consoles.close_on_logout")


def close_consoles_on_logout(sender, request, user, **kwargs):
    """Signing out ends that person's open consoles (4003), in every window and browser (issue 17: the
    same close as "sign out everywhere", ``tenancy.sessions.close_consoles``)."""
    if user is None:
        return
    from tenancy.sessions import close_consoles

    close_consoles(user.pk, "You signed out.")
