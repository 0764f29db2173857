from django.apps import AppConfig


class IdentityConfig(AppConfig):
    """Sign-in through the institution's identity provider (OIDC) or directory (LDAP), and the group → tenant
    role mapping (issue 17)."""

    name = "identity"
    verbose_name = "Identity providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from identity import ldap_backend

        ldap_backend.connect()
