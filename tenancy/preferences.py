"""A person's preferences (``tenancy.models.Preferences``): for now, the time zone every page shows
them times in. Read once a request by ``tenancy.middleware``; changed only here, audited
(``preferences.created`` / ``preferences.updated`` with before and after)."""

from __future__ import annotations

from core import timezones, writes
from core.errors import PortalError
from tenancy.models import Preferences


def time_zone_of(user) -> str:
    """The zone ``user`` chose (an IANA name), or "" for the browser's."""
    return Preferences.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first() or ""


def set_time_zone(user, zone: str, *, actor) -> Preferences:
    """Keep ``zone`` (a name of the tz database, or "" for the browser's) as ``user``'s zone."""
    zone = (zone or "").strip()
    if zone and not timezones.is_known(zone):
        raise PortalError(
            f"“{zone[:64]}” is not a time zone the portal knows: choose one from the list (e.g. Europe/Paris).",
            details={"time_zone": zone[:64]},
        )
    current = Preferences.objects.filter(user_id=user.pk).first()
    if current is None:
        return writes.create_object(Preferences(user=user, time_zone=zone), actor=actor)
    return writes.update_object(current, {"time_zone": zone}, actor=actor)
