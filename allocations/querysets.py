"""Tenant scoping. User-facing lists start from ``visible_to(user)``."""

from django.db import models

from allocations.choices import HOLDING_STATUSES, Role


class MembershipQuerySet(models.QuerySet):
    def tenant_ids_of(self, user) -> list[int]:
        return list(
            self.filter(user=user, role=Role.TENANT_MEMBER, tenant__isnull=False).values_list("tenant_id", flat=True)
        )


class TenantQuerySet(models.QuerySet):
    def visible_to(self, user):
        from allocations.services.access import sees_everything

        if sees_everything(user):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(memberships__user=user, memberships__role=Role.TENANT_MEMBER).distinct()


class DesktopTemplateQuerySet(models.QuerySet):
    def visible_to(self, user):
        from allocations.services.access import sees_everything

        if sees_everything(user):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(
            is_active=True,
            allowed_tenants__memberships__user=user,
            allowed_tenants__memberships__role=Role.TENANT_MEMBER,
        ).distinct()


class DesktopQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Operators see every desktop; an end user sees the desktops they own."""
        from allocations.services.access import sees_everything

        if sees_everything(user):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)

    def holding_capacity(self):
        return self.filter(status__in=HOLDING_STATUSES)

    def for_tenant(self, tenant):
        return self.filter(tenant=tenant)


class QuotaRequestQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Operators see every request; a member sees their tenants' requests."""
        from allocations.services.access import roles_of, sees_everything

        if sees_everything(user):
            return self
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(tenant_id__in=roles_of(user).tenant_ids)
