"""Tenants and memberships (who belongs where, with which role), API tokens and a person's preferences."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from core import timezones
from tenancy.querysets import MembershipQuerySet, TenantQuerySet
from tenancy.roles import PLATFORM_ROLES, Role

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{0,49}$", "Use lower-case letters, digits and hyphens.")


class Tenant(models.Model):
    """An organisation whose members share one quota. Every tenant has exactly one Quota."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive tenants keep their history but get nothing new.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        db_table = "allocations_tenant"  # the table it had before tenancy was an app of its own
        ordering = ["name"]

    #: The object type audit events have always named tenants by (kept across the move to this app).
    audit_object_type = "allocations.tenant"

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role. Platform admins and auditors act platform-wide (no tenant);
    a tenant member belongs to exactly the tenant named here."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        db_table = "allocations_membership"
        ordering = ["user__username", "role"]
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant", "role"], name="membership_unique_tenant_role"),
            models.UniqueConstraint(
                fields=["user", "role"], condition=models.Q(tenant__isnull=True), name="membership_unique_platform_role"
            ),
            models.CheckConstraint(
                condition=(models.Q(role=Role.TENANT_MEMBER) & models.Q(tenant__isnull=False))
                | (models.Q(role__in=PLATFORM_ROLES) & models.Q(tenant__isnull=True)),
                name="membership_tenant_matches_role",
            ),
        ]

    audit_object_type = "allocations.membership"

    def __str__(self) -> str:
        where = self.tenant.name if self.tenant_id else "platform"
        return f"{self.user} · {self.get_role_display()} · {where}"

    def clean(self):
        if self.role == Role.TENANT_MEMBER and not self.tenant_id:
            raise ValidationError({"tenant": "A tenant member must belong to a tenant."})
        if self.role in PLATFORM_ROLES and self.tenant_id:
            raise ValidationError(
                {"tenant": f"The {self.get_role_display()} role is platform-wide; leave tenant empty."}
            )


class APITokenQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class APIToken(models.Model):
    """A personal key for the API (``Authorization: Token <key>``). Only the key's SHA-256 is stored:
    the key itself is shown once, when it is made (``tenancy.tokens``). ``prefix`` is its first
    characters, not secret, so a person can tell their tokens apart. A revoked token stays listed,
    with the time it was revoked, and authenticates nobody."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What it is for (a script, a laptop).")
    prefix = models.CharField(max_length=16, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = APITokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        label = f" ({self.name})" if self.name else ""
        return f"{self.prefix}…{label} of {self.user}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


def validate_time_zone(value: str) -> None:
    if value and not timezones.is_known(value):
        raise ValidationError(f"“{value}” is not a time zone of the tz database (e.g. Europe/Paris).")


class Preferences(models.Model):
    """What a person chose for themselves. ``time_zone``: the IANA zone every page shows them times
    in (``core.timezones``, via ``tenancy.middleware``); blank means the browser's."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences")
    time_zone = models.CharField(
        max_length=64, blank=True, validators=[validate_time_zone], help_text="Blank: the browser's zone."
    )

    class Meta:
        verbose_name = "preferences"
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"Preferences of {self.user}"
