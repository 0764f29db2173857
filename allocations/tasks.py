"""Desktop work on the hosts. Each task takes an id, re-reads the row, checks its status first
(so a second delivery does nothing twice), runs under a time limit, and retries only driver
errors that say a retry can help. Permanent failures undo what was built and free the claim."""

from __future__ import annotations

import functools

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from django.conf import settings
from django.utils import timezone

from allocations.choices import DesktopStatus, EndReason
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services import hosting, idle, leases, lifecycle, suspend
from allocations.services.reconcile import reconcile_host
from inventory import rhythm
from inventory.drivers.base import DriverError
from inventory.models import Host

log = get_task_logger(__name__)
MAX_RETRIES = 5
TIME_LIMIT = settings.PORTAL_PROVISION_TIMEOUT_S
REBOOT_TIME_LIMIT = settings.PORTAL_GUEST_READY_TIMEOUT_S + 60
SUSPEND_TIME_LIMIT = settings.PORTAL_SUSPEND_TIMEOUT_S
GUEST_STARTING = "the guest is starting"
GUEST_RESTARTING = "the guest is restarting"
BUILD_FAILED = "The desktop could not be started on its host."  # libvirt's words go to the audit, for admins


def _backoff(retries: int) -> int:
    return min(120, 2 * 3**retries)  # 2, 6, 18, 54, 120 s


def _holder(task) -> str:
    """The lease holder's name: the task's id (kept across its retries)."""
    return (task.request.id or "")[:64] or f"eager-{id(task)}"


def _load(desktop_id: int) -> Desktop | None:
    return (
        Desktop.objects.select_related("host", "tenant", "template", "profile", "owner").filter(pk=desktop_id).first()
    )


def _still(desktop: Desktop, status: str) -> bool:
    return Desktop.objects.filter(pk=desktop.pk, status=status).exists()


def _fail(desktop: Desktop, reason: str, detail: str = "") -> None:
    """Undo what may exist on the host (best effort), then FAILED with the claim freed. ``reason`` is in
    words for the owner; ``detail`` (libvirt's own text) goes to the audit event, for admins."""
    try:
        hosting.teardown_desktop(desktop)
    except DriverError as exc:
        reason = f"{reason.rstrip('.')}; cleaning up also failed (the reconciler will retry it)."
        detail = f"{detail}; clean-up: {exc}" if detail else f"clean-up: {exc}"
    try:
        lifecycle.transition(
            desktop.pk, DesktopStatus.FAILED, reason=reason, end_reason=EndReason.FAILED, detail=detail
        )
    except InvalidTransition:
        pass  # already final


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES, soft_time_limit=TIME_LIMIT, time_limit=TIME_LIMIT + 30)
def provision(self, desktop_id: int) -> str | None:
    with leases.held(desktop_id, _holder(self), (DesktopStatus.REQUESTED, DesktopStatus.PROVISIONING)) as lease:
        if lease is None:
            return None  # released, failed or running already, or a live worker is building it
        return _provision(self, desktop_id, lease)


def _provision(self, desktop_id: int, lease: leases.Lease) -> str | None:
    desktop = _load(desktop_id)
    if desktop is None or desktop.status not in (DesktopStatus.REQUESTED, DesktopStatus.PROVISIONING):
        return None
    if desktop.status == DesktopStatus.REQUESTED:
        desktop = lifecycle.transition(desktop.pk, DesktopStatus.PROVISIONING, reason="building on the host")
        desktop = _load(desktop_id)
    booting = False
    try:
        info = hosting.build_desktop(desktop)
        # Started is not ready: the desktop stays provisioning, saying so, until its guest is up, so
        # no one opens a console onto a boot screen believing the desktop is ready.
        booting = True
        lifecycle.note_progress(desktop.pk, GUEST_STARTING, status=DesktopStatus.PROVISIONING)
        hosting.wait_until_ready(desktop)
    except SoftTimeLimitExceeded:
        _fail(desktop, f"provisioning took longer than {TIME_LIMIT} s")
        return "failed"
    except DriverError as exc:
        if exc.retryable and self.request.retries < self.max_retries:
            log.info("desktop %s: transient error, retrying: %s", desktop_id, exc)
            lease.keep_for(_backoff(self.request.retries))  # the retry is this task's: no one else meanwhile
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        if not _still(desktop, DesktopStatus.PROVISIONING):
            return None  # released while it was built or booted: the queued teardown removes it
        if booting:  # the guest did not come up: the driver says why in words
            _fail(desktop, str(exc), exc.detail)
        else:
            _fail(desktop, BUILD_FAILED, f"could not be built on {desktop.host.name}: {exc}")
        return "failed"
    now = timezone.now()
    try:
        lifecycle.transition(
            desktop.pk,
            DesktopStatus.RUNNING,
            reason="",
            started_at=now,
            expires_at=lifecycle.expiry_for(desktop, now),
            vnc_port=info.vnc_port,
        )
    except InvalidTransition:
        return None  # released while it was being built: the queued teardown removes it
    return "running"


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES, soft_time_limit=TIME_LIMIT, time_limit=TIME_LIMIT + 30)
def teardown(self, desktop_id: int) -> str | None:
    with leases.held(desktop_id, _holder(self), (DesktopStatus.STOPPING,)) as lease:
        if lease is None:
            return None  # done already, or a live worker is removing it
        return _teardown(self, desktop_id, lease)


def _teardown(self, desktop_id: int, lease: leases.Lease) -> str | None:
    desktop = _load(desktop_id)
    if desktop is None or desktop.status != DesktopStatus.STOPPING:
        return None
    try:
        hosting.teardown_desktop(desktop)
    except SoftTimeLimitExceeded:
        lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason=f"teardown took longer than {TIME_LIMIT} s")
        return "failed"
    except DriverError as exc:
        if exc.retryable and self.request.retries < self.max_retries:
            lease.keep_for(_backoff(self.request.retries))
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        lifecycle.transition(
            desktop.pk,
            DesktopStatus.FAILED,
            reason="The host could not remove the desktop; the reconciler will remove what is left.",
            detail=f"teardown: {exc}",  # libvirt's words: for admins (audit), not the owner's page
        )
        return "failed"
    final = lifecycle.teardown_end_status(desktop)
    lifecycle.transition(desktop.pk, final, reason=desktop.status_reason)
    return final


@shared_task(
    bind=True, acks_late=True, max_retries=3, soft_time_limit=REBOOT_TIME_LIMIT, time_limit=REBOOT_TIME_LIMIT + 30
)
def reboot(self, desktop_id: int) -> str | None:
    """Power-cycle a running desktop. It stays running (its capacity and console rights do not change)
    and says "the guest is restarting" (the pages show "Rebooting…") until the guest is up again, then
    ``desktop.rebooted``; a reboot that fails, or a guest that does not come back in time, is audited
    (``desktop.reboot_failed``) and the desktop's reason says why, left to its owner to reboot again or
    release."""
    desktop = _load(desktop_id)
    if desktop is None or desktop.status != DesktopStatus.RUNNING:
        return None
    lifecycle.note_progress(desktop.pk, GUEST_RESTARTING, status=DesktopStatus.RUNNING)
    try:
        info = hosting.reboot_desktop(desktop)
    except DriverError as exc:
        if exc.retryable and self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        log.warning("desktop %s: reboot failed: %s", desktop_id, exc)
        lifecycle.finish_reboot(desktop.pk, failure="the host could not restart it", detail=str(exc))
        return "failed"
    Desktop.objects.filter(pk=desktop.pk).update(vnc_port=info.vnc_port)
    try:
        hosting.wait_until_ready(desktop)
    except SoftTimeLimitExceeded:
        failure = f"it restarted, but its guest was not up within {REBOOT_TIME_LIMIT} s"
        lifecycle.finish_reboot(desktop.pk, failure=failure)
        return "not ready"
    except DriverError as exc:
        lifecycle.finish_reboot(desktop.pk, failure=f"it restarted, but {exc}")
        return "not ready"
    lifecycle.finish_reboot(desktop.pk)
    return "rebooted"


#: What ``_on_host`` answers when the host's part failed (and the desktop was told why).
FAILED = object()


def _on_host(task, work, fail, *, doing: str, refused: str):
    """The host's part of a suspend or resume: ``work()``'s answer. A driver error that a retry can help
    retries ``task`` while it has retries left; the time limit or a refusal calls ``fail`` with the reason in
    words (the driver's own text as ``detail``) and answers FAILED."""
    try:
        return work()
    except SoftTimeLimitExceeded:
        fail(failure=f"{doing} took longer than {SUSPEND_TIME_LIMIT} s")
    except DriverError as exc:
        if exc.retryable and task.request.retries < task.max_retries:
            raise task.retry(exc=exc, countdown=_backoff(task.request.retries)) from exc
        fail(failure=refused, detail=str(exc))
    return FAILED


@shared_task(
    bind=True, acks_late=True, max_retries=3, soft_time_limit=SUSPEND_TIME_LIMIT, time_limit=SUSPEND_TIME_LIMIT + 30
)
def suspend_desktop(self, desktop_id: int) -> str | None:
    """Save a suspending desktop's memory to disk (libvirt managed save) and stop its guest; then it says
    it is suspended. Does nothing for a desktop no longer suspending (resumed or released meanwhile, or
    saved already). A save the host refuses leaves it running as before (``suspend.suspend_failed``)."""
    desktop = _load(desktop_id)
    if desktop is None or desktop.status != DesktopStatus.SUSPENDED or desktop.suspended_at is not None:
        return None
    fail = functools.partial(suspend.suspend_failed, desktop.pk)
    saved = _on_host(
        self, lambda: hosting.save_desktop(desktop), fail, doing="saving", refused="the host could not save it"
    )
    if saved is FAILED:
        return "failed"
    suspend.mark_saved(desktop.pk)
    return "suspended"


@shared_task(
    bind=True, acks_late=True, max_retries=3, soft_time_limit=SUSPEND_TIME_LIMIT, time_limit=SUSPEND_TIME_LIMIT + 30
)
def resume_desktop(self, desktop_id: int) -> str | None:
    """Start a suspended desktop's domain again on its host (restored from its managed save); RUNNING.
    Does nothing for a desktop no longer suspended (a second delivery, or released meanwhile)."""
    desktop = _load(desktop_id)
    if desktop is None or desktop.status != DesktopStatus.SUSPENDED:
        return None
    fail = functools.partial(suspend.resume_failed, desktop.pk)
    info = _on_host(
        self, lambda: hosting.restore_desktop(desktop), fail, doing="restoring", refused="the host could not restore it"
    )
    if info is FAILED:
        return "failed"
    return "running" if suspend.finish_resume(desktop.pk, vnc_port=info.vnc_port) else None


@shared_task
def sweep_idle() -> dict:
    """Beat, every minute: idle desktops are warned, then suspended or released (``services.idle``)."""
    return idle.sweep_idle()


@shared_task
def expire_due() -> dict:
    """Beat: warn desktops about to expire, and release those past their time."""
    return lifecycle.expire_due_desktops()


@shared_task
def sweep_stuck() -> dict:
    """Beat: tasks whose worker died or whose order was lost are queued again (``leases.requeue_lost``);
    desktops stuck in flight past the cut-off fail or are given up on (``lifecycle.sweep_stuck_desktops``)."""
    counts = lifecycle.sweep_stuck_desktops()  # first: what is past the cut-off is given up, not resumed
    return {"requeued": leases.requeue_lost(), **counts}


@shared_task(bind=True, acks_late=True, soft_time_limit=120, time_limit=150)
def reconcile_host_by_id(self, host_id: int) -> dict | None:
    """Reconcile one host (on its own queue). Problems are collected into the report and kept on the
    host row for its page, never raised; the log repeats them for whoever reads the worker's."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return None
    report = reconcile_host(host)
    for problem in report.problems:
        log.warning("reconcile %s: %s: %s", host.name, problem["what"], problem["detail"])
    return report.as_dict()


# Each host's worker reconciles its own host every 5 minutes (``inventory.rhythm``; was a beat fan-out).
rhythm.every(300.0, reconcile_host_by_id)


@shared_task
def reconcile_all() -> int:
    hosts = Host.objects.reachable()
    for host in hosts:
        reconcile_host_by_id.apply_async(args=[host.pk], queue=host.queue)
    return len(hosts)
