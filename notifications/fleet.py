"""Fleet problems for the platform admins: a host gone offline, a host whose sync failed. Neither is
always an audited change (a failed sync is written on the host row only), so a beat task compares the
fleet overview's problems (``allocations.services.fleet``, the one definition) with the alerts already
told: each problem is told once when it appears, and told again only if it comes back after clearing."""

from __future__ import annotations

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from allocations.services.fleet import PROBLEM_LABELS, fleet_problems
from notifications.models import FleetAlert, NotificationKind
from notifications.services import notify, platform_admins

#: The problems admins are told of (the others stay on the fleet overview).
TOLD = ("host_offline", "host_unreachable")


def check_fleet(now=None) -> dict:
    """Open an alert (and tell every platform admin) for each new problem; close those that are gone."""
    now = now or timezone.now()
    current = {f"{p['kind']}:{p['subject']}": p for p in fleet_problems(now) if p["kind"] in TOLD}
    opened = closed = 0
    with transaction.atomic():
        open_alerts = {a.key: a for a in FleetAlert.objects.select_for_update().filter(closed_at__isnull=True)}
        for key, alert in open_alerts.items():
            if key not in current:
                alert.closed_at = now
                alert.save(update_fields=["closed_at"])
                closed += 1
        admins = list(platform_admins()) if set(current) - set(open_alerts) else []
        for key, problem in current.items():
            if key in open_alerts:
                continue
            FleetAlert.objects.create(key=key, detail=problem["detail"][:600], opened_at=now)
            opened += 1
            for admin in admins:
                notify(
                    admin,
                    NotificationKind.FLEET_PROBLEM,
                    title=f"{PROBLEM_LABELS[problem['kind']]}: {problem['subject']}",
                    body=problem["detail"],
                    link=problem["link"] or reverse("fleet-overview"),
                )
    return {"opened": opened, "closed": closed}
