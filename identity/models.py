"""Which directory or provider groups grant which role, and which memberships the mapping made."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from tenancy.models import Membership, Tenant
from tenancy.roles import PLATFORM_ROLES, Role


class Source(models.TextChoices):
    LDAP = "ldap", "LDAP / Active Directory"
    OIDC = "oidc", "OpenID Connect"


class GroupMapping(models.Model):
    """Members of ``group`` (as ``source`` names it: the group's cn or full DN for LDAP, a value of the
    groups claim for OIDC; compared without case) hold ``role``, of ``tenant`` for tenant members."""

    source = models.CharField(max_length=10, choices=Source.choices)
    group = models.CharField(max_length=255, help_text="LDAP: the group's cn or DN. OIDC: a value of the groups claim.")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="group_mappings")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "group", "role"]
        constraints = [
            models.UniqueConstraint(fields=["source", "group", "tenant", "role"], name="group_mapping_unique"),
            models.UniqueConstraint(
                fields=["source", "group", "role"],
                condition=models.Q(tenant__isnull=True),
                name="group_mapping_unique_platform",
            ),
        ]

    def __str__(self) -> str:
        where = f" of {self.tenant}" if self.tenant_id else ""
        return f"{self.get_source_display()} group {self.group} → {self.get_role_display()}{where}"

    def clean(self):
        self.group = (self.group or "").strip()
        if self.role == Role.TENANT_MEMBER and not self.tenant_id:
            raise ValidationError({"tenant": "A tenant member role needs a tenant: choose one."})
        if self.role in PLATFORM_ROLES and self.tenant_id:
            raise ValidationError(
                {"tenant": f"The {self.get_role_display()} role is platform-wide; leave tenant empty."}
            )


class MappedMembership(models.Model):
    """Marks a Membership that a group mapping made, so that only those are ever taken away by it;
    memberships made by hand have no such row. Goes with its membership."""

    membership = models.OneToOneField(Membership, on_delete=models.CASCADE, related_name="mapped_by")
    source = models.CharField(max_length=10, choices=Source.choices)
    groups = models.JSONField(default=list, help_text="The groups that granted it, when it was granted.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.membership} (from {self.source} groups {', '.join(self.groups)})"


class ExternalAccount(models.Model):
    """A portal account's identity at a provider: the OIDC subject (``sub``) or the LDAP username, and
    the groups it was last seen in (the periodic sync re-applies the mappings to them)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_accounts")
    source = models.CharField(max_length=10, choices=Source.choices)
    subject = models.CharField(max_length=255)
    groups = models.JSONField(default=list)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "subject"], name="external_account_unique_subject"),
            models.UniqueConstraint(fields=["source", "user"], name="external_account_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.source} ({self.subject})"
