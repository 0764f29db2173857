from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "tenancy"
    verbose_name = "Tenants and roles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from tenancy import audit_signals, sessions, signin

        audit_signals.connect()  # every change of who may do what is audited, however it is made
        signin.connect()  # sign-ins, failures and lockouts are audited
        sessions.connect()  # issue 17: a sign-in starts the session's clocks (expiry, idle)
