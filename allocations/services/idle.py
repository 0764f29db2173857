"""Idle desktops given back: detection, the warning, and the template's action after the grace period.

A running desktop of a template with an idle limit is *idle* when both hold:

- its GPU is idle: every minute average of its vGPU's SM utilization (or, passthrough, of each of its
  GPUs) since a moment is below the template's threshold (``sm_util < threshold``; a minute at the
  threshold is busy). A desktop without a GPU has nothing to measure: only its console counts. When the
  newest minute sample is older than ``PORTAL_IDLE_TELEMETRY_STALE_S`` the GPU's activity is *unknown*
  and nothing is warned or reclaimed on it (missing telemetry proves nothing);
- its console had no input (``Desktop.last_input_at``, noted by the consoles app at most once a minute).

Both clocks start when it last started running (``started_at``, or ``resumed_at`` after a resume). Idle
for the limit, it is warned (``desktop.idle_warned``, audited, pushed to its owner); used again (input,
or a busy minute after the warning) the warning is withdrawn; still idle ``PORTAL_IDLE_GRACE_S`` after
the warning, it is suspended (``services.suspend``) or released (``desktop.reclaimed``), as its template
says (``DesktopTemplate.idle_effective_action``). Samples are read in one place, ``sm_samples``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from allocations.choices import DesktopStatus, EndReason, IdleAction
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services import lifecycle, suspend
from core import live
from inventory.services.utilization import history

MINUTE = timedelta(minutes=1)
#: How often consoles note input on their desktop (the idle clock's resolution).
INPUT_NOTE_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Sample:
    """One minute of one GPU's (or vGPU's) activity: ``source`` names it ("gpu:<id>" or the mdev UUID)."""

    source: str
    t: datetime
    sm_util: float


def sm_samples(desktop: Desktop, since: datetime, until: datetime) -> list[Sample]:
    """The minute averages of SM utilization of the desktop's vGPU (passthrough: of each of its GPUs) in
    [since, until), oldest first, each minute once per source. The one reader of utilization telemetry
    for idle detection and the held-vs-used report: it goes through ``utilization.history`` (minute
    averages where rolled up, raw samples after), averaging what it gets per minute."""
    mdev = str(desktop.mdev_uuid) if desktop.mdev_uuid else ""
    if not mdev and not desktop.gpu_count:
        return []
    samples = []
    for gpu_id in desktop.gpus.values_list("pk", flat=True):
        minutes: dict[datetime, list[float]] = defaultdict(list)
        for point in history(gpu_id, mdev_uuid=mdev, since=since):
            t = datetime.fromtimestamp(point["t"], tz=UTC)
            if t < until and point["sm_util"] is not None:
                minutes[t.replace(second=0, microsecond=0)].append(point["sm_util"])
        source = mdev or f"gpu:{gpu_id}"
        samples += [Sample(source, t, sum(values) / len(values)) for t, values in minutes.items()]
    return sorted(samples, key=lambda s: (s.t, s.source))


def has_gpu(desktop: Desktop) -> bool:
    return bool(desktop.mdev_uuid or desktop.gpu_count)


@dataclass(frozen=True)
class IdleState:
    """How close a desktop is to being given back, and why (its page shows it)."""

    applies: bool  # a running desktop of a template with an idle limit
    known: bool = True  # False: its GPU's telemetry is missing or stale
    limit_minutes: int = 0
    threshold_pct: int = 0
    action: str = IdleAction.SUSPEND
    gpu_idle_since: datetime | None = None  # None: no GPU to measure
    input_idle_since: datetime | None = None
    idle_since: datetime | None = None
    warned_at: datetime | None = None
    now: datetime | None = None

    @property
    def idle_for(self) -> timedelta:
        return self.now - self.idle_since if self.applies and self.known else timedelta(0)

    @property
    def is_idle(self) -> bool:
        """Idle for the template's limit (exactly the limit counts)."""
        return self.applies and self.known and self.idle_for >= timedelta(minutes=self.limit_minutes)

    @property
    def used_since_warning(self) -> bool:
        return self.warned_at is not None and self.known and self.idle_since > self.warned_at

    @property
    def warn_at(self) -> datetime | None:
        return self.idle_since + timedelta(minutes=self.limit_minutes) if self.applies and self.known else None

    @property
    def act_at(self) -> datetime | None:
        """When the template's action comes unless the desktop is used: the grace period after the warning
        (or after the warning it would get now)."""
        if not self.applies or not self.known:
            return None
        warned = self.warned_at or max(self.warn_at, self.now)
        return warned + timedelta(seconds=settings.PORTAL_IDLE_GRACE_S)

    @property
    def gpu_idle_minutes(self) -> int | None:
        return int((self.now - self.gpu_idle_since).total_seconds() // 60) if self.gpu_idle_since else None

    @property
    def input_idle_minutes(self) -> int:
        return int((self.now - self.input_idle_since).total_seconds() // 60) if self.input_idle_since else 0

    @property
    def action_words(self) -> str:
        return "suspended" if self.action == IdleAction.SUSPEND else "released"


def lookback(desktop: Desktop) -> timedelta:
    """How far back samples are read: the limit, the grace period and a few minutes more; an idle stretch
    longer than that is shown as that long (the decisions never need more)."""
    limit = timedelta(minutes=desktop.template.idle_limit_minutes or 0)
    return limit + timedelta(seconds=settings.PORTAL_IDLE_GRACE_S) + timedelta(minutes=5)


def assess(desktop: Desktop, now: datetime | None = None) -> IdleState:
    """The desktop's idle state at ``now`` (see the module for the rules)."""
    now = now or timezone.now()
    template = desktop.template
    if desktop.status != DesktopStatus.RUNNING or not template.idle_limit_minutes or not desktop.started_at:
        return IdleState(applies=False, now=now)
    active_since = max(t for t in (desktop.started_at, desktop.resumed_at) if t is not None)
    state = {
        "applies": True,
        "limit_minutes": template.idle_limit_minutes,
        "threshold_pct": template.idle_sm_threshold_pct,
        "action": template.idle_effective_action,
        "warned_at": desktop.idle_warned_at,
        "now": now,
        "input_idle_since": max(active_since, desktop.last_input_at or active_since),
    }
    idle_since = state["input_idle_since"]
    if has_gpu(desktop):
        start = max(active_since, now - lookback(desktop))
        samples = sm_samples(desktop, start, now + MINUTE)
        fresh = now - timedelta(seconds=settings.PORTAL_IDLE_TELEMETRY_STALE_S)
        if not samples or samples[-1].t < fresh:
            return IdleState(**{**state, "known": False})
        busy = [s.t for s in samples if s.sm_util >= template.idle_sm_threshold_pct]
        # a busy minute average at t means the GPU worked during [t, t + 1 min)
        gpu_idle_since = max(start, busy[-1] + MINUTE) if busy else start
        state["gpu_idle_since"] = gpu_idle_since
        idle_since = max(idle_since, gpu_idle_since)
    return IdleState(**state, idle_since=idle_since)


def note_console_input(desktop_id: int, at: datetime | None = None) -> bool:
    """Record console input on the desktop: its idle clock starts over. Written at most once a minute
    (a conditional update), so a busy console costs one write a minute. Returns whether it wrote."""
    at = at or timezone.now()
    stale = Q(last_input_at__isnull=True) | Q(last_input_at__lte=at - INPUT_NOTE_EVERY)
    return bool(Desktop.objects.filter(stale, pk=desktop_id).update(last_input_at=at))


def _words(state: IdleState) -> str:
    gpu = "" if state.gpu_idle_since is None else f"GPU idle for {state.gpu_idle_minutes} min, "
    return f"{gpu}no console input for {state.input_idle_minutes} min"


def warn_idle(desktop: Desktop, state: IdleState) -> bool:
    """Warn the owner once (``idle_warned_at`` claimed by a conditional update): audited as
    ``desktop.idle_warned`` and pushed to the owner's live group. Returns whether this call warned."""
    with transaction.atomic():
        claimed = Desktop.objects.filter(pk=desktop.pk, status=DesktopStatus.RUNNING, idle_warned_at__isnull=True)
        if not claimed.update(idle_warned_at=state.now):
            return False
        desktop.idle_warned_at = state.now
        act_at = state.now + timedelta(seconds=settings.PORTAL_IDLE_GRACE_S)
        after = {
            "idle_since": state.idle_since,
            "gpu_idle_minutes": state.gpu_idle_minutes,
            "input_idle_minutes": state.input_idle_minutes,
            "threshold_pct": state.threshold_pct,
            "action": state.action,
            "act_at": act_at,
        }
        lifecycle.record_desktop_event(desktop, "desktop.idle_warned", actor=None, before={}, after=after)
        live.publish_on_commit(
            [live.user_group(desktop.owner_id)],
            "desktop.idle_warning",
            {
                "id": desktop.pk,
                "name": desktop.name,
                "action": state.action,
                "act_at": act_at.isoformat(),
                "reason": f"{_words(state)}: {state.action_words} at {act_at:%H:%M} UTC unless used",
            },
        )
    return True


def withdraw_warning(desktop: Desktop) -> bool:
    """The desktop was used after its warning: the warning no longer holds (not audited; pushed so its
    page stops showing it)."""
    with transaction.atomic():
        warned = Desktop.objects.filter(pk=desktop.pk, idle_warned_at=desktop.idle_warned_at)
        if not warned.update(idle_warned_at=None):
            return False
        desktop.idle_warned_at = None
        lifecycle.publish_desktop(desktop, "desktop.idle_cleared")
    return True


def release_idle(desktop: Desktop, state: IdleState) -> bool:
    """Give an idle desktop back: released (end reason idle) and audited ``desktop.reclaimed`` with what
    it gave back, in the same transaction. Returns False when it moved on meanwhile."""
    with transaction.atomic():
        locked = Desktop.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=desktop.pk)
        if locked.status != DesktopStatus.RUNNING or locked.idle_warned_at != state.warned_at:
            return False
        try:
            lifecycle.release_desktop(
                locked, actor=None, end_reason=EndReason.IDLE, reason=f"given back while idle ({_words(state)})"
            )
        except InvalidTransition:
            return False
        remaining = max(0, int((locked.expires_at - state.now).total_seconds())) if locked.expires_at else 0
        after = {
            "action": IdleAction.RELEASE,
            "idle_since": state.idle_since,
            "framebuffer_mib": locked.framebuffer_mib,
            "gpu_count": locked.gpu_count,
            "remaining_s": remaining,
        }
        lifecycle.audit_desktop("desktop.reclaimed", locked, actor=None, after=after)
    return True


def sweep_idle(now: datetime | None = None) -> dict:
    """Beat, every minute: warn idle desktops, withdraw warnings of used ones, and suspend or release those
    still idle after the grace period; suspensions whose host work was lost are queued again. Returns the
    counts."""
    now = now or timezone.now()
    counts = {"warned": 0, "cleared": 0, "suspended": 0, "released": 0, "requeued": suspend.requeue_lost(now)}
    grace = timedelta(seconds=settings.PORTAL_IDLE_GRACE_S)
    candidates = Desktop.objects.filter(
        status=DesktopStatus.RUNNING, template__idle_limit_minutes__isnull=False, started_at__isnull=False
    ).select_related("template", "tenant")
    for desktop in candidates.order_by("pk"):
        state = assess(desktop, now)
        if not state.known:
            continue  # unknown GPU activity: never warned or reclaimed on it
        if desktop.idle_warned_at is None:
            if state.is_idle:
                counts["warned"] += warn_idle(desktop, state)
        elif state.used_since_warning:
            counts["cleared"] += withdraw_warning(desktop)
        elif now >= desktop.idle_warned_at + grace:
            if state.action == IdleAction.SUSPEND:
                counts["suspended"] += suspend.suspend_idle(desktop, warned_at=state.warned_at, why=_words(state))
            else:
                counts["released"] += release_idle(desktop, state)
    return counts
