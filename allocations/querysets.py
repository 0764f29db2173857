"""Tenant scoping of what allocations holds (``visible_to`` comes from ``tenancy.querysets``)."""

from allocations.choices import HOLDING_STATUSES
from tenancy.querysets import VisibleToQuerySet
from tenancy.roles import Role, roles_of


class DesktopTemplateQuerySet(VisibleToQuerySet):
    def for_member(self, user):
        """The active templates offered to a tenant they belong to."""
        return self.filter(
            is_active=True,
            allowed_tenants__memberships__user=user,
            allowed_tenants__memberships__role=Role.TENANT_MEMBER,
        ).distinct()


class DesktopQuerySet(VisibleToQuerySet):
    def for_member(self, user):
        """The desktops they own."""
        return self.filter(owner=user)

    def holding_capacity(self):
        return self.filter(status__in=HOLDING_STATUSES)


class QuotaRequestQuerySet(VisibleToQuerySet):
    def for_member(self, user):
        """Their tenants' requests."""
        return self.filter(tenant_id__in=roles_of(user).tenant_ids)
