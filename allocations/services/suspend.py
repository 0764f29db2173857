"""Suspending an idle desktop to disk and resuming it on request (the status moves in ``lifecycle``).

RUNNING → SUSPENDED is claimed on the locked row (still running, still the warning it was given), audited
``desktop.suspended``, and the host's worker then saves the guest's memory (``tasks.suspend_desktop``: libvirt
managed save); ``suspended_at`` says the image is written. A suspended desktop keeps its vGPU and host
claim (its template said so: ``DesktopTemplate.idle_effective_action``), so resuming needs no placement:
``tasks.resume_desktop`` starts the domain on the same host, libvirt restores it from the image, and it is
RUNNING again (``desktop.resumed``) with a fresh idle clock. Its expiry runs on while it is suspended.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services import lifecycle

SAVING = "suspending: its memory is being saved to disk"
SUSPENDED = "suspended after it sat idle: resume it to carry on where you left off"
RESUMING = "resuming: its memory is being restored"


def suspend_idle(desktop: Desktop, *, warned_at: datetime, why: str) -> bool:
    """Suspend a desktop still idle after its warning. Returns False when it moved on meanwhile (used,
    released, or warned anew)."""
    with transaction.atomic():
        locked = Desktop.objects.select_for_update(of=("self",)).get(pk=desktop.pk)
        if locked.status != DesktopStatus.RUNNING or locked.idle_warned_at != warned_at:
            return False
        locked = lifecycle.transition(locked.pk, DesktopStatus.SUSPENDED, reason=f"{SAVING} ({why})", suspended_at=None)
        lifecycle.enqueue_host_task("suspend_desktop", locked)
    return True


def mark_saved(desktop_id: int) -> bool:
    """The host saved the guest's memory: the desktop says it is suspended. A conditional update (a desktop
    resumed or released meanwhile is left alone); not audited (``desktop.suspended`` was), published."""
    with transaction.atomic():
        saving = Desktop.objects.filter(pk=desktop_id, status=DesktopStatus.SUSPENDED, suspended_at__isnull=True)
        if not saving.update(suspended_at=timezone.now(), status_reason=SUSPENDED):
            return False
        lifecycle.publish_desktop(Desktop.objects.get(pk=desktop_id), "desktop.progress")
    return True


def suspend_failed(desktop_id: int, *, failure: str, detail: str = "") -> bool:
    """The host could not save it: it is running as before (``desktop.suspend_failed``), its idle clock
    started over. Returns False when it moved on meanwhile."""
    try:
        lifecycle.transition(
            desktop_id,
            DesktopStatus.RUNNING,
            reason=f"it could not be suspended: {failure}",
            detail=detail,
            verb="desktop.suspend_failed",
            idle_warned_at=None,
            resumed_at=timezone.now(),
        )
    except InvalidTransition:
        return False
    return True


def request_resume(desktop: Desktop, *, actor) -> Desktop:
    """Resume a suspended desktop (its owner's "Resume"): audited ``desktop.resume_requested``; the host's
    worker restores it (``tasks.resume_desktop``). Refused (409) unless its memory image is written."""
    with transaction.atomic():
        locked = Desktop.objects.select_for_update(of=("self",)).select_related("tenant", "host").get(pk=desktop.pk)
        if locked.status != DesktopStatus.SUSPENDED:
            raise InvalidTransition(
                f"Only a suspended desktop can be resumed; this one is {locked.get_status_display().lower()}.",
                details={"status": locked.status},
            )
        if locked.suspended_at is None:
            raise InvalidTransition(
                "It is still being suspended (its memory is being saved): resume it in a moment.",
                details={"status": locked.status},
            )
        locked.status_reason = RESUMING
        locked.save(update_fields=["status_reason"])
        lifecycle.record_desktop_event(locked, "desktop.resume_requested", actor=actor, before={}, after={})
        lifecycle.enqueue_host_task("resume_desktop", locked)
    return locked


def finish_resume(desktop_id: int, *, vnc_port: int | None) -> bool:
    """The host restored it: RUNNING again (``desktop.resumed``), its idle clock starting now."""
    try:
        lifecycle.transition(
            desktop_id,
            DesktopStatus.RUNNING,
            reason="",
            verb="desktop.resumed",
            vnc_port=vnc_port,
            resumed_at=timezone.now(),
            suspended_at=None,
            idle_warned_at=None,
        )
    except InvalidTransition:
        return False
    return True


def resume_failed(desktop_id: int, *, failure: str, detail: str = "") -> bool:
    """The host could not restore it: it stays suspended, saying why (``desktop.resume_failed``); its owner
    may try again or release it."""
    reason = f"it could not be resumed: {failure}; try again, or release it"[:500]
    with transaction.atomic():
        if not Desktop.objects.filter(pk=desktop_id, status=DesktopStatus.SUSPENDED).update(status_reason=reason):
            return False
        desktop = Desktop.objects.select_related("tenant").get(pk=desktop_id)
        after = {"reason": reason, **({"detail": detail[:2000]} if detail else {})}
        lifecycle.record_desktop_event(desktop, "desktop.resume_failed", actor=None, before={}, after=after)
    return True


def requeue_lost(now: datetime | None = None) -> int:
    """Suspensions whose save was not written within the task's time limit (its worker died, its order was
    lost) are queued again, at most once per time limit each (``requeued_at`` claimed). Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.PORTAL_SUSPEND_TIMEOUT_S + 60)
    lost = Desktop.objects.filter(
        status=DesktopStatus.SUSPENDED, suspended_at__isnull=True, status_changed_at__lt=cutoff
    ).filter(Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff))
    count = 0
    for desktop in lost.select_related("host"):
        with transaction.atomic():
            claim = Desktop.objects.filter(pk=desktop.pk, status=DesktopStatus.SUSPENDED, suspended_at__isnull=True)
            if claim.filter(Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff)).update(requeued_at=now):
                lifecycle.enqueue_host_task("suspend_desktop", desktop)
                count += 1
    return count
