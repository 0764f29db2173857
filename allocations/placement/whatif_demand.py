"""Demand known ahead, added to the what-if's replay (``placement.whatif``): higher layers register
providers here in their AppConfig.ready, as bookings does for its booked windows (allocations must not
import them).

The replay's window stands for the next ``days`` as well as the last ones: the history (or the chosen
mix) is replayed as what the coming days will ask, and each provider's arrivals come on top, at their
offset from now (a booked window starting in 26 hours arrives 26 hours into the window) for their
length, as many as it holds desktops. A provider is ``provider(days=, now=, vcpu_milli=) -> Ahead | None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from allocations.placement import whatif
from core.errors import PortalError


@dataclass(frozen=True)
class Ahead:
    """Demand known ahead: its arrivals and how it reads on the page ("2 booked windows (6 desktops) held
    for bookings")."""

    kind: str  # e.g. "bookings"
    arrivals: tuple[whatif.Arrival, ...]
    windows: int
    words: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "windows": self.windows, "desktops": len(self.arrivals), "words": self.words}


DEMAND_PROVIDERS: list[Callable[..., Ahead | None]] = []


def demand_ahead(days: int, *, now, vcpu_milli: int) -> list[Ahead]:
    parts = [provider(days=days, now=now, vcpu_milli=vcpu_milli) for provider in DEMAND_PROVIDERS]
    parts = [p for p in parts if p and p.arrivals]
    if sum(len(p.arrivals) for p in parts) > whatif.MAX_ARRIVALS:
        raise PortalError(f"The demand booked ahead is over {whatif.MAX_ARRIVALS:,} requests: choose fewer days.")
    return parts


def run_whatif(scenario: whatif.Scenario, *, now=None) -> dict:
    """``whatif.run_whatif`` with the demand known ahead on top; ``ahead`` in the answer lists it, and the
    summary says it ("… including 2 booked windows (6 desktops) held for bookings.")."""
    now = now or timezone.now()
    parts = demand_ahead(scenario.days, now=now, vcpu_milli=settings.PORTAL_PLACEMENT_VCPU_MILLI)
    arrivals = [a for p in parts for a in p.arrivals]
    result = whatif.run_whatif(scenario, now=now, ahead=arrivals)
    result["ahead"] = [p.as_dict() for p in parts]
    if parts and result["before"]["requests"]:
        including = " and ".join(p.words for p in parts)
        result["demand"] = f"{result['before']['requests']:,} requests replayed, including {including}"
        result["summary"] += (
            f" The {result['before']['requests']:,} requests replayed include {including} in the next "
            f"{scenario.days} days, each at its start for its length."
        )
    return result
