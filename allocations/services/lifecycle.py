"""The desktop lifecycle: the one writer of ``Desktop.status``.

Every move is checked against ``choices.TRANSITIONS``, made on the locked row,
audited in the same transaction, and, on reaching a final status, returns the
desktop's capacity exactly once (``holds_capacity`` flips under the row lock).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from allocations.choices import FINAL_STATUSES, TRANSITIONS, DesktopStatus, EndReason
from allocations.exceptions import InvalidTransition, QuotaExceeded
from allocations.models import Desktop, Quota
from allocations.services.quotas import check_monthly_hours
from audit import services as audit
from core import live
from core.errors import PortalError
from core.queue import enqueue_on_commit
from inventory.models import Host
from inventory.services import capacity


def audit_desktop(verb: str, desktop: Desktop, *, actor, before: dict | None = None, after: dict | None = None):
    """Audit ``verb`` about the desktop, in the caller's transaction: named by its name, on its tenant, so
    it lands on the desktop's timeline (``AuditEvent.objects.about(desktop)``)."""
    return audit.record_row(
        verb, desktop, actor=actor, tenant=desktop.tenant, text=desktop.name, before=before, after=after
    )


def record_desktop_event(desktop: Desktop, verb: str, *, actor, before: dict | None, after: dict | None) -> None:
    """Audit ``verb`` on the desktop (in the caller's transaction) and tell its owner and the operators
    after commit."""
    audit_desktop(verb, desktop, actor=actor, before=before, after=after)
    publish_desktop(desktop, verb)


def publish_desktop(desktop: Desktop, verb: str) -> None:
    """After commit, tell the owner and the operators what happened to this desktop."""
    payload = {
        "id": desktop.pk,
        "name": desktop.name,
        "status": desktop.status,
        "status_label": desktop.get_status_display(),
        "reason": desktop.status_reason,
        "verb": verb,
        "owner_id": desktop.owner_id,
        "tenant_id": desktop.tenant_id,
        "mdev_uuid": str(desktop.mdev_uuid) if desktop.mdev_uuid else None,
        "host_id": desktop.host_id,  # issue 19: its owner's socket joins the host's utilization group
        "expires_at": desktop.expires_at.isoformat() if desktop.expires_at else None,
        "vnc_port": desktop.vnc_port,
    }
    live.publish_on_commit([live.user_group(desktop.owner_id), live.OPERATORS], "desktop.status", payload)


def free_capacity(desktop: Desktop) -> bool:
    """Return the desktop's GPU instances and host vCPU/RAM. Runs at most once per desktop."""
    if not Desktop.objects.filter(pk=desktop.pk, holds_capacity=True).update(holds_capacity=False):
        return False
    desktop.holds_capacity = False
    # quota row before host and GPUs: the order every request takes its locks in
    # (never below zero: a counter that drifted must not keep a desktop from being released;
    # ``manage.py recount_quotas`` puts counters back to what the desktops hold)
    Quota.objects.filter(tenant_id=desktop.tenant_id).update(
        desktops_held=Greatest(F("desktops_held") - 1, 0),
        framebuffer_held_mib=Greatest(F("framebuffer_held_mib") - desktop.framebuffer_mib, 0),
    )
    if desktop.host_id:
        capacity.release_host(desktop.host_id, desktop.vcpus, desktop.memory_mib)
        capacity.release_gpus(list(desktop.gpus.values_list("pk", flat=True)))
    return True


def transition(
    desktop_id: int,
    to: str,
    *,
    actor=None,
    reason: str = "",
    end_reason: str = "",
    detail: str = "",
    verb: str = "",
    **fields,
) -> Desktop:
    """Move a desktop to ``to``. Raises InvalidTransition (409) when the table forbids it. ``reason`` is
    shown to the owner (words); ``detail`` (a driver's own text) is kept in the audit event, for admins.
    The audit verb is ``desktop.<to>`` unless ``verb`` names the move (``desktop.resumed``)."""
    with transaction.atomic():
        desktop = Desktop.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=desktop_id)
        if to not in TRANSITIONS[desktop.status]:
            raise InvalidTransition(
                f"A {desktop.get_status_display().lower()} desktop cannot become {DesktopStatus(to).label.lower()}.",
                details={"status": desktop.status, "wanted": to},
            )
        before = {"status": desktop.status}
        now = timezone.now()
        desktop.status = to
        desktop.status_reason = reason[:500]
        desktop.status_changed_at = now
        if end_reason:
            desktop.end_reason = end_reason
        for key, value in fields.items():
            setattr(desktop, key, value)
        if to == DesktopStatus.PROVISIONING and not desktop.domain_name:
            desktop.domain_name = f"desktop-{desktop.pk}"  # named as its build starts, before anything exists
        if to in FINAL_STATUSES:
            desktop.ended_at = now
            freed = free_capacity(desktop)
        else:
            freed = False
        desktop.save()
        after = {"status": to, **({"reason": reason} if reason else {}), **({"capacity_freed": True} if freed else {})}
        if detail:
            after["detail"] = detail[:2000]
        for key in ("vnc_port", "expires_at", "end_reason"):
            if key in fields or (key == "end_reason" and end_reason):
                after[key] = getattr(desktop, key)
        record_desktop_event(desktop, verb or f"desktop.{to}", actor=actor, before=before, after=after)
        if before["status"] == DesktopStatus.RUNNING:
            # Its open consoles end with the reason shown in their page (consoles/consumers.py).
            live.publish_on_commit(
                [live.console_desktop_group(desktop.pk)],
                "console.close",
                {"code": 4000, "reason": console_close_reason(desktop)},
            )
    return desktop


def console_close_reason(desktop: Desktop) -> str:
    """Why a desktop that ran stopped, in words for the person at its console."""
    if desktop.status == DesktopStatus.FAILED or desktop.end_reason in (EndReason.FAILED, EndReason.HOST_LOST):
        return f"The desktop failed: {desktop.status_reason or 'no reason given'}."
    if desktop.end_reason == EndReason.EXPIRED:
        return "The desktop expired."
    if desktop.end_reason == EndReason.DRAINED:
        return f"The host was drained: {desktop.drain_reason.rstrip('.') or 'no reason given'}."
    if desktop.status == DesktopStatus.SUSPENDED:
        return "The desktop was suspended after it sat idle: resume it from its page."
    if desktop.end_reason == EndReason.IDLE:
        return "The desktop was given back after it sat idle."
    return "The desktop was released."


def note_progress(desktop_id: int, reason: str, *, status: str) -> bool:
    """Say what a desktop in ``status`` is waiting for ("the guest is starting") without moving it.
    A conditional update: a desktop that moved on meanwhile (released while it booted) is left alone.
    Not audited (the status moves around it are); published so the pages show it. Returns whether
    the note was written."""
    with transaction.atomic():
        if not Desktop.objects.filter(pk=desktop_id, status=status).update(status_reason=reason[:500]):
            return False
        publish_desktop(Desktop.objects.get(pk=desktop_id), "desktop.progress")
    return True


def teardown_end_status(desktop: Desktop) -> str:
    return {
        EndReason.RELEASED: DesktopStatus.RELEASED,
        EndReason.EXPIRED: DesktopStatus.EXPIRED,
        EndReason.DRAINED: DesktopStatus.RELEASED,
        EndReason.IDLE: DesktopStatus.RELEASED,
    }.get(desktop.end_reason, DesktopStatus.FAILED)


def enqueue_host_task(task_name: str, desktop: Desktop) -> None:
    """Queue ``allocations.tasks.<task_name>`` for the desktop on its host's queue with the current
    transaction (through the outbox: delivered after commit, also when the broker is briefly away)."""
    queue = desktop.host.queue if desktop.host_id else None
    enqueue_on_commit(f"allocations.tasks.{task_name}", desktop.pk, queue=queue)


def release_desktop(desktop: Desktop, *, actor, end_reason: str = EndReason.RELEASED, reason: str = "") -> Desktop:
    """Start tearing a desktop down; the host's worker finishes it (``tasks.teardown``)."""
    if desktop.status == DesktopStatus.STOPPING:
        raise InvalidTransition("This desktop is already being released.")
    with transaction.atomic():
        desktop = transition(
            desktop.pk,
            DesktopStatus.STOPPING,
            actor=actor,
            end_reason=end_reason,
            reason=reason or EndReason(end_reason).label,
        )
        enqueue_host_task("teardown", desktop)
    return desktop


#: Rules of higher layers on extending a desktop: callables ``guard(desktop)`` that raise InvalidTransition,
#: in words, when it may not be extended (bookings: a booked desktop ends with its window). Filled in their
#: AppConfig.ready.
EXTENSION_GUARDS: list = []


def extend_desktop(desktop: Desktop, hours: int, *, actor) -> Desktop:
    """Push a running desktop's expiry back, within the tenant's longest-desktop limit and its monthly
    desktop-hours cap (``quotas.check_monthly_hours``)."""
    if hours < 1:
        raise PortalError("Extend by at least one hour.")
    with transaction.atomic():
        locked = Desktop.objects.select_for_update(of=("self",)).select_related("tenant", "template").get(pk=desktop.pk)
        if locked.status != DesktopStatus.RUNNING:
            raise InvalidTransition(f"Only a running desktop can be extended; this one is {locked.status}.")
        if locked.drain_reason:
            raise InvalidTransition(f"Its host is being drained ({locked.drain_reason}): it cannot be extended.")
        for guard in EXTENSION_GUARDS:
            guard(locked)
        # the quota row's lock (after the desktop's, as releases take them) serialises the tenant's requests
        # and extensions, so two cannot both take the last of the monthly desktop-hours
        quota = Quota.objects.select_for_update(of=("self",)).select_related("tenant").get(tenant=locked.tenant)
        limit = quota.max_desktop_hours
        limit = min(limit, locked.template.max_duration_hours or limit)  # the template's own maximum, if any
        total = locked.duration_hours + hours
        if total > limit:
            raise QuotaExceeded(
                f"A desktop may last at most {limit} hours; this one already has {locked.duration_hours}.",
                details={
                    "resource": "desktop_hours",
                    "used": locked.duration_hours,
                    "allowed": limit,
                    "requested": hours,
                },
            )
        check_monthly_hours(
            quota, hours=hours, starting=locked.expires_at, what=f"extending it by {hours} h", shorter="extension"
        )
        before = {"duration_hours": locked.duration_hours, "expires_at": locked.expires_at}
        locked.duration_hours = total
        locked.expires_at = locked.expires_at + timedelta(hours=hours)
        locked.expiry_warned_at = None
        locked.save(update_fields=["duration_hours", "expires_at", "expiry_warned_at"])
        record_desktop_event(
            locked,
            "desktop.extended",
            actor=actor,
            before=before,
            after={"duration_hours": total, "expires_at": locked.expires_at},
        )
    return locked


def reboot_desktop(desktop: Desktop, *, actor) -> Desktop:
    with transaction.atomic():
        locked = Desktop.objects.select_for_update(of=("self",)).select_related("tenant", "host").get(pk=desktop.pk)
        if locked.status != DesktopStatus.RUNNING:
            raise InvalidTransition(f"Only a running desktop can be rebooted; this one is {locked.status}.")
        record_desktop_event(locked, "desktop.reboot_requested", actor=actor, before={}, after={})
        enqueue_host_task("reboot", locked)
    return locked


def finish_reboot(desktop_id: int, *, failure: str = "", detail: str = "") -> bool:
    """End a reboot of a running desktop: ``desktop.rebooted`` with its reason cleared, or, given
    ``failure`` (in words), ``desktop.reboot_failed`` with the desktop's reason saying it. The desktop
    stays running either way (it holds its host; its owner may reboot again or release it). A conditional
    update, like ``note_progress``: a desktop that moved on meanwhile is left alone. Returns whether
    it was written. ``detail`` (the host's own words) goes to the audit event only, for admins."""
    reason = f"the reboot failed: {failure}"[:500] if failure else ""
    with transaction.atomic():
        if not Desktop.objects.filter(pk=desktop_id, status=DesktopStatus.RUNNING).update(status_reason=reason):
            return False
        desktop = Desktop.objects.select_related("tenant").get(pk=desktop_id)
        verb = "desktop.reboot_failed" if failure else "desktop.rebooted"
        after = {"reason": reason} if reason else {}
        if detail:
            after["detail"] = detail
        record_desktop_event(desktop, verb, actor=None, before={}, after=after)
    return True


def expiry_for(desktop: Desktop, started):
    """When a desktop that starts at ``started`` ends: its duration, or its drained host's stop time
    (``services.drain``) if that comes first."""
    end = started + timedelta(hours=desktop.duration_hours)
    stop_at = desktop.host.drain_stop_at if desktop.drain_reason and desktop.host_id else None
    return min(end, max(stop_at, started)) if stop_at else end


def drained_reason(desktop: Desktop) -> str:
    """Why a drained desktop stopped, in the owner's words (its timeline and status reason)."""
    return f"its host was drained: {desktop.drain_reason}"


def stuck_cutoff():
    return timezone.now() - timedelta(seconds=settings.PORTAL_STUCK_AFTER_S)


def expire_due_desktops(now=None) -> dict:
    """Warn running desktops about to expire (once: ``expiry_warned_at`` is claimed with a conditional
    update, audited), and release those past their time (suspended ones too: their time runs on). Returns
    the counts."""
    now = now or timezone.now()
    warned = 0
    soon = now + timedelta(seconds=settings.PORTAL_EXPIRY_WARNING_S)
    for desktop in Desktop.objects.filter(
        status=DesktopStatus.RUNNING, expires_at__lte=soon, expires_at__gt=now, expiry_warned_at__isnull=True
    ).select_related("tenant"):
        with transaction.atomic():
            if Desktop.objects.filter(pk=desktop.pk, expiry_warned_at__isnull=True).update(expiry_warned_at=now):
                warned += 1
                audit_desktop("desktop.expiry_warning", desktop, actor=None, after={"expires_at": desktop.expires_at})
    expired = 0
    past = Desktop.objects.filter(status__in=(DesktopStatus.RUNNING, DesktopStatus.SUSPENDED), expires_at__lte=now)
    for desktop in past.select_related("host"):
        # A drained desktop ends at its host's stop time (expires_at was moved to it): it says so.
        drained = bool(desktop.drain_reason)
        end_reason, reason = (EndReason.DRAINED, drained_reason(desktop)) if drained else (EndReason.EXPIRED, "")
        try:
            release_desktop(desktop, actor=None, end_reason=end_reason, reason=reason or "its time ran out")
            expired += 1
        except InvalidTransition:
            pass  # released meanwhile
    return {"warned": warned, "expired": expired}


def sweep_stuck_desktops() -> dict:
    """Desktops stuck in flight past PORTAL_STUCK_AFTER_S. On a host that is offline (its worker or
    libvirt silent) nothing can finish them: they fail with the host lost and their capacity and quota
    are returned. Elsewhere provisioning is given up on and torn down. (A task whose worker died is
    queued again long before, by ``leases.requeue_lost``.) Returns the counts."""
    stuck = Desktop.objects.filter(status_changed_at__lt=stuck_cutoff()).select_related("host")
    counts = {"abandoned": 0, "host_lost": 0}
    for desktop in stuck.filter(host__in=Host.objects.offline()):
        try:
            transition(
                desktop.pk,
                DesktopStatus.FAILED,
                end_reason=EndReason.HOST_LOST,
                reason=f"its host {desktop.host.name} is offline",
            )
            counts["host_lost"] += 1
        except InvalidTransition:
            pass  # RUNNING desktops on an offline host are left to the reconciler when the host returns
    reachable = stuck.exclude(host__in=Host.objects.offline())
    for desktop in reachable.filter(status=DesktopStatus.PROVISIONING):
        try:
            release_desktop(
                desktop,
                actor=None,
                end_reason=EndReason.FAILED,
                reason=f"provisioning did not finish within {settings.PORTAL_STUCK_AFTER_S} s",
            )
            counts["abandoned"] += 1
        except InvalidTransition:
            pass
    return counts
