"""Who sees which bookings: the one rule every page, feed and endpoint of bookings reads.

Operators (platform admins, auditors) see every booking; a member sees the bookings they made or have a
desktop in; a tenant manager (``may_book_for_group``) also sees their tenant's. Anything else is "not
found", also for other tenants' rows."""

from __future__ import annotations

from django.db.models import Q

from bookings.models import Booking, Occurrence
from bookings.services import group_tenant_ids
from core.errors import NotFound
from tenancy.roles import roles_of


def managed_tenant_ids(user) -> frozenset[int]:
    """The tenants whose bookings the user manages: those they book for groups in (``GroupBooker``)."""
    return group_tenant_ids(user)


def bookings_visible_to(user, *, scope: str = "auto"):
    """``scope``: "mine" (made by or for the user), "tenant" (their managed tenants'), "fleet" (operators:
    all), or "auto" (all that the user may see)."""
    roles = roles_of(user)
    qs = Booking.objects.select_related("tenant", "template", "owner")
    mine = Q(owner=user) | Q(people=user)
    if scope == "mine":
        return qs.filter(mine).distinct()
    if scope == "tenant":
        return qs.filter(tenant_id__in=managed_tenant_ids(user))
    if roles.sees_everything:
        return qs
    return qs.filter(mine | Q(tenant_id__in=managed_tenant_ids(user))).distinct()


def occurrences_visible_to(user, *, scope: str = "auto"):
    ids = bookings_visible_to(user, scope=scope).values("pk")
    return Occurrence.objects.filter(booking_id__in=ids).select_related("booking__template", "booking__tenant")


def get_booking_for(user, pk: int) -> Booking:
    booking = bookings_visible_to(user).filter(pk=pk).first()
    if booking is None:
        raise NotFound("No such booking among yours.")
    return booking
