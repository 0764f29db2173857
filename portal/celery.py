"""The Celery app. Tasks are discovered from each app's tasks.py; the beat schedule lives here."""

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    "check-heartbeats": {"task": "inventory.tasks.check_heartbeats", "schedule": 30.0},
    "expire-due-desktops": {"task": "allocations.tasks.expire_due", "schedule": 30.0},
    # issue 18: idle desktops are warned, then suspended or released (allocations/services/idle.py).
    "sweep-idle-desktops": {"task": "allocations.tasks.sweep_idle", "schedule": 60.0},
    # Often: a desktop whose worker died is picked up again within a minute (allocations/services/leases.py).
    "sweep-stuck-desktops": {"task": "allocations.tasks.sweep_stuck", "schedule": 15.0},
    "booking-calendar": {"task": "bookings.tasks.run_calendar", "schedule": 60.0},  # issue 18: booked windows
    # Per-host work is not here: each host's worker keeps its own rhythm (inventory/rhythm.py) for sampling,
    # heartbeats, the 5-minute libvirt sync and reconciliation; check-heartbeats above marks silent hosts offline.
    "publish-fleet-utilization": {
        "task": "inventory.tasks.publish_fleet_utilization",
        "schedule": 2.0,
        "options": {"expires": 2.0},  # a late one is worthless: the next is due
    },
    "rollup-utilization": {"task": "inventory.tasks.rollup_utilization", "schedule": 60.0},
    "checkpoint-audit": {"task": "audit.tasks.checkpoint_audit", "schedule": 600.0},
    # issue 17: queued mail whose next attempt is due, and fleet problems told to the platform admins
    "send-due-mail": {"task": "notifications.tasks.send_due", "schedule": 30.0},
    "check-fleet-problems": {"task": "notifications.tasks.check_fleet", "schedule": 60.0},
    "prune-utilization": {"task": "inventory.tasks.prune_utilization", "schedule": 3600.0},
    # issue 17: memberships from directory groups follow the directory without a new sign-in (identity.sync)
    "sync-identities": {"task": "identity.tasks.sync_identities", "schedule": float(settings.PORTAL_IDENTITY_SYNC_S)},
}
