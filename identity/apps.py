from django.apps import AppConfig


class IdentityConfig(AppConfig):
    """Sign-in through the institution's identity provider (OIDC) or directory (LDAP), and the group → tenant
    role mapping (issue 17)."""

    name = "identity"
    verbose_name = "Identity providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import pre_save

        from identity import ldap_backend, services
        from tenancy.models import Membership

        ldap_backend.connect()
        pre_save.connect(services.forget_hand_changes, sender=Membership, dispatch_uid="identity.forget_hand_changes")
