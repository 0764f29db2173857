"""Tenant scoping: user-facing lists start from ``visible_to(user)``, and every scoped queryset gets
it from ``VisibleToQuerySet``, so "operators see everything, anonymous users nothing" is written once."""

from django.db import models

from tenancy.roles import Role, sees_everything


class VisibleToQuerySet(models.QuerySet):
    """``visible_to(user)``: every row for operators (platform admins, auditors), none for anonymous or
    inactive users, and for everyone else what the subclass's ``for_member(user)`` keeps."""

    def visible_to(self, user):
        if sees_everything(user):
            return self
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            return self.none()
        return self.for_member(user)

    def for_member(self, user):
        raise NotImplementedError(f"{type(self).__name__} must say what a member sees (for_member)")


class TenantQuerySet(VisibleToQuerySet):
    def for_member(self, user):
        """The tenants they belong to."""
        return self.filter(memberships__user=user, memberships__role=Role.TENANT_MEMBER).distinct()


class MembershipQuerySet(VisibleToQuerySet):
    def for_member(self, user):
        """Their own memberships."""
        return self.filter(user=user)
