"""Quota usage and quota-increase requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from allocations.choices import HOLDING_STATUSES, QuotaRequestStatus
from allocations.exceptions import InvalidTransition, NotAllowed, QuotaExceeded
from allocations.models import Desktop, Quota, QuotaRequest
from audit import services as audit
from core.errors import Conflict, Forbidden, PortalError
from core.limits import (
    MAX_DESKTOP_HOURS,
    MAX_DESKTOP_HOURS_PER_MONTH,
    MAX_DESKTOPS,
    MAX_FRAMEBUFFER_MIB,
    MAX_REASON_CHARS,
)
from core.units import gib
from core.writes import create_object
from tenancy.models import Tenant
from tenancy.roles import is_platform_admin


@dataclass
class Usage:
    """What a tenant holds now, desktops in flight included (the quota row's counters); desktops per
    profile are counted on demand (only quotas with per-profile limits need them)."""

    tenant_id: int
    desktops: int
    framebuffer_mib: int
    _per_profile: dict[str, int] | None = field(default=None, repr=False)

    @property
    def per_profile(self) -> dict[str, int]:
        if self._per_profile is None:
            self._per_profile = dict(
                Desktop.objects.filter(tenant_id=self.tenant_id, profile__isnull=False)
                .holding_capacity()
                .values_list("profile__name")
                .annotate(n=Count("id"))
                .order_by()
            )
        return self._per_profile


def usage_of(tenant: Tenant, quota: Quota | None = None) -> Usage:
    """What the tenant holds now; pass the (locked) quota row when you have it."""
    quota = quota or Quota.objects.get(tenant=tenant)
    return Usage(tenant.pk, quota.desktops_held, quota.framebuffer_held_mib)


def month_start(now=None):
    """The first instant of the current month in the active time zone."""
    local = timezone.localtime(now or timezone.now())
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def desktop_hours_this_month(tenant: Tenant, *, now=None) -> float:
    """Hours the tenant's desktops have run this month (each from its start to its end or now, clipped to
    the month), one decimal. The usage report (``reports.usage``) charges the same span."""
    now = now or timezone.now()
    start = month_start(now)
    spans = (
        Desktop.objects.filter(tenant=tenant, started_at__isnull=False, started_at__lt=now)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .values_list("started_at", "ended_at")
    )
    seconds = sum(max(0.0, (min(ended or now, now) - max(started, start)).total_seconds()) for started, ended in spans)
    return round(seconds / 3600, 1)


def utc_month(now) -> tuple[datetime, datetime]:
    """The calendar month (UTC) that ``now`` falls in: its first instant and the next month's."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=32)).replace(day=1)


def _hours_within(begin, end, month: tuple[datetime, datetime]) -> float:
    return max(0.0, (min(end, month[1]) - max(begin, month[0])).total_seconds()) / 3600


def desktop_hours_booked_this_month(tenant_id: int, *, now=None) -> float:
    """What the monthly desktop-hours cap counts (``Quota.max_desktop_hours_per_month``), in the calendar
    month (UTC): ended desktops by the time they actually ran, running ones up to their expiry (booked, not
    only used so far), ones not started yet for their whole duration from now; each clipped to the month.
    Unrounded (the check compares exactly; people are shown one decimal)."""
    now = now or timezone.now()
    month = utc_month(now)
    rows = (
        Desktop.objects.filter(tenant_id=tenant_id)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=month[0]))
        .filter(Q(started_at__isnull=True) | Q(started_at__lt=month[1]))
        .values_list("started_at", "ended_at", "expires_at", "duration_hours", "status")
    )
    hours = 0.0
    for started, ended, expires, duration, status in rows:
        if ended is not None:
            hours += _hours_within(started, ended, month) if started else 0.0
        elif started is not None:
            hours += _hours_within(started, max(expires or now, now), month)
        elif status in HOLDING_STATUSES:  # asked for, not running yet: it will run its whole duration
            hours += _hours_within(now, now + timedelta(hours=duration), month)
    return hours


def _h(hours: float) -> str:
    return f"{round(hours, 1):g}"


def check_monthly_hours(
    quota: Quota, *, hours: int, starting=None, what: str = "this desktop", shorter: str = "desktop", now=None
) -> None:
    """Raise QuotaExceeded, in words, when ``hours`` more desktop-hours from ``starting`` (default now) would
    take the tenant over its monthly cap; only the part within this month counts. Call it with the quota row
    locked (every request and extension of the tenant queues there) so two cannot both take the last hours."""
    cap = quota.max_desktop_hours_per_month
    if cap is None:
        return
    now = now or timezone.now()
    begin = max(starting or now, now)
    needed = _hours_within(begin, begin + timedelta(hours=hours), utc_month(now))
    used = desktop_hours_booked_this_month(quota.tenant_id, now=now)
    if needed and used + needed > cap:
        raise QuotaExceeded(
            f"{quota.tenant.name} has used {_h(used)} of its {cap} desktop-hours this month; {what} would need "
            f"{_h(needed)} more. Ask for a higher quota or a shorter {shorter}.",
            details={
                "resource": "desktop_hours_per_month",
                "used": round(used, 1),
                "allowed": cap,
                "requested": round(needed, 1),
            },
        )


@dataclass
class QuotaLine:
    """One limit of a tenant's quota beside what the tenant uses of it now. ``key`` names the limit as the
    quota's field (``max_desktops``) or ``profile:<name>``; ``unit`` is "", "MiB" or "h"."""

    key: str
    label: str
    used: int | float
    allowed: int
    unit: str = ""

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.allowed)) if self.allowed else 100

    @property
    def over(self) -> bool:
        return self.used > self.allowed


def quota_lines(tenant: Tenant, quota: Quota | None = None, *, now=None) -> list[QuotaLine]:
    """Each limit of the tenant's quota with its usage now: desktops, framebuffer, each per-profile cap,
    the longest desktop (beside the longest the tenant holds now) and, when capped, the desktop-hours used or
    booked this month (``desktop_hours_booked_this_month``)."""
    quota = quota or Quota.objects.get(tenant=tenant)
    usage = usage_of(tenant, quota)
    lines = [
        QuotaLine("max_desktops", "Desktops at once", usage.desktops, quota.max_desktops),
        QuotaLine("max_framebuffer_mib", "Framebuffer", usage.framebuffer_mib, quota.max_framebuffer_mib, "MiB"),
    ]
    for limit in quota.profile_limits.select_related("profile"):
        name = limit.profile.name
        lines.append(QuotaLine(f"profile:{name}", name, usage.per_profile.get(name, 0), limit.max_instances))
    longest = Desktop.objects.filter(tenant=tenant).holding_capacity().order_by("-duration_hours").first()
    lines.append(
        QuotaLine(
            "max_desktop_hours",
            "Longest desktop",
            longest.duration_hours if longest else 0,
            quota.max_desktop_hours,
            "h",
        )
    )
    if quota.max_desktop_hours_per_month is not None:
        used = round(desktop_hours_booked_this_month(tenant.pk, now=now), 1)
        lines.append(
            QuotaLine(
                "max_desktop_hours_per_month", "Desktop-hours this month", used, quota.max_desktop_hours_per_month, "h"
            )
        )
    return lines


def recount(tenant: Tenant, *, actor=None) -> bool:
    """Set the tenant's held counters to what its desktops hold (under the quota lock); audited when they
    differed. Returns whether they did."""
    with transaction.atomic():
        quota = Quota.objects.select_for_update().get(tenant=tenant)
        desktops, framebuffer = counted_usage(tenant)
        before = {"desktops_held": quota.desktops_held, "framebuffer_held_mib": quota.framebuffer_held_mib}
        after = {"desktops_held": desktops, "framebuffer_held_mib": framebuffer}
        if before == after:
            return False
        Quota.objects.filter(pk=quota.pk).update(**after)
        audit.record_row("quota.recounted", quota, actor=actor, tenant=tenant, before=before, after=after)
        return True


def charge(quota_id: int, framebuffer_mib: int) -> None:
    """Count one more desktop and its framebuffer on the (locked) quota row. Plain SQL: it runs in every
    request (the ORM's UPDATE building cost twice what the statement does)."""
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {Quota._meta.db_table} SET desktops_held = desktops_held + 1, "
            f"framebuffer_held_mib = framebuffer_held_mib + %s WHERE id = %s",
            [framebuffer_mib, quota_id],
        )


def counted_usage(tenant: Tenant) -> tuple[int, int]:
    """The tenant's holding desktops and framebuffer counted from the desktops themselves (checks the counters)."""
    totals = (
        Desktop.objects.holding_capacity().filter(tenant=tenant).aggregate(n=Count("id"), fb=Sum("framebuffer_mib"))
    )
    return totals["n"] or 0, totals["fb"] or 0


def check_room(quota: Quota, usage: Usage, *, framebuffer_mib: int, profile_name: str | None) -> None:
    """Raise QuotaExceeded naming what is used and what is allowed when one more desktop does not fit."""
    if usage.desktops + 1 > quota.max_desktops:
        raise QuotaExceeded(
            f"Your tenant already has {usage.desktops} of {quota.max_desktops} desktops allowed at once "
            f"(desktops being started count too).",
            details={"resource": "desktops", "used": usage.desktops, "allowed": quota.max_desktops, "requested": 1},
        )
    if usage.framebuffer_mib + framebuffer_mib > quota.max_framebuffer_mib:
        raise QuotaExceeded(
            f"This desktop needs {gib(framebuffer_mib)} of GPU framebuffer; your tenant uses "
            f"{gib(usage.framebuffer_mib)} of {gib(quota.max_framebuffer_mib)} allowed.",
            details={
                "resource": "framebuffer_mib",
                "used": usage.framebuffer_mib,
                "allowed": quota.max_framebuffer_mib,
                "requested": framebuffer_mib,
            },
        )
    if profile_name:
        limit = _profile_limit(quota, profile_name)
        used = usage.per_profile.get(profile_name, 0) if limit is not None else 0
        if limit is not None and used + 1 > limit.max_instances:
            raise QuotaExceeded(
                f"Your tenant already has {used} of {limit.max_instances} {profile_name} desktops allowed.",
                details={
                    "resource": f"profile:{profile_name}",
                    "used": used,
                    "allowed": limit.max_instances,
                    "requested": 1,
                },
            )


REQUESTABLE = ("max_desktops", "max_framebuffer_mib", "max_desktop_hours", "max_desktop_hours_per_month")
#: The most a quota may be raised to, per limit (core.limits): what the database and common sense hold.
CEILINGS = {
    "max_desktops": (MAX_DESKTOPS, "desktops"),
    "max_framebuffer_mib": (MAX_FRAMEBUFFER_MIB, "MiB (1 PiB)"),
    "max_desktop_hours": (MAX_DESKTOP_HOURS, "hours (90 days)"),
    "max_desktop_hours_per_month": (MAX_DESKTOP_HOURS_PER_MONTH, "desktop-hours a month"),
}


def check_within_ceilings(values: dict) -> None:
    """Raise PortalError naming each limit asked above what the portal allows at all (or not a whole number)."""
    over = []
    for key, value in values.items():
        if key not in CEILINGS or value is None:
            continue
        ceiling, unit = CEILINGS[key]
        if not isinstance(value, int) or isinstance(value, bool) or value > ceiling:
            over.append(f"{key} may be at most {ceiling} {unit}")
    if over:
        raise PortalError("That is more than the portal allows: " + "; ".join(over) + ".")


def check_reason(reason: str, *, what: str = "The reason") -> str:
    """The reason (or decision note) stripped; PortalError when it is longer than MAX_REASON_CHARS. The one
    rule for pages and API alike (their forms only mirror it)."""
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON_CHARS:
        raise PortalError(
            f"{what} is {len(reason)} characters long; keep it to {MAX_REASON_CHARS}.",
            details={"field": "reason", "max_length": MAX_REASON_CHARS, "length": len(reason)},
        )
    return reason


def request_quota_increase(*, actor, tenant: Tenant, changes: dict, reason: str) -> QuotaRequest:
    """A member asks for higher limits. Each asked-for value must exceed the current one and stay within
    ``CEILINGS``; the reason within MAX_REASON_CHARS. A tenant has at most one pending request per limit:
    asking again for a limit already asked for is a Conflict (409), checked under the tenant's quota row
    lock so two requests at once cannot both pass."""
    if not tenant.is_active:
        raise NotAllowed(f"{tenant.name} is inactive: it keeps its history but gets nothing new.")
    asked = {k: v for k, v in changes.items() if k in REQUESTABLE and v is not None}
    if not asked:
        raise PortalError("Ask for at least one of: " + ", ".join(REQUESTABLE) + ".")
    check_within_ceilings(asked)
    reason = check_reason(reason)
    if not reason:
        raise PortalError("Say why you need more (reason).")
    with transaction.atomic():
        # The quota row's lock serialises one tenant's requests: the pending check below and the insert
        # happen as one step, so two requests for the same limit cannot both see "none pending".
        quota = Quota.objects.select_for_update().get(tenant=tenant)
        not_higher = [_not_higher(k, getattr(quota, k)) for k, v in asked.items() if not _raises(getattr(quota, k), v)]
        if not_higher:
            raise PortalError("Ask for more than you have: " + "; ".join(not_higher) + ".")
        _refuse_a_second_pending_request(tenant, asked)
        return create_object(
            QuotaRequest(tenant=tenant, requested_by=actor, reason=reason, **asked), actor=actor, tenant=tenant
        )


def _raises(current: int | None, asked: int) -> bool:
    """Whether ``asked`` is more than ``current`` (None: no cap, which nothing raises)."""
    return current is not None and asked > current


def _not_higher(key: str, current: int | None) -> str:
    return f"{key} is already {'unlimited' if current is None else current}"


def _refuse_a_second_pending_request(tenant: Tenant, asked: dict) -> None:
    pending = QuotaRequest.objects.filter(tenant=tenant, status=QuotaRequestStatus.PENDING).order_by("created_at")
    for other in pending.select_related("requested_by"):
        same = [k for k in asked if getattr(other, k) is not None]
        if same:
            raise Conflict(
                f"{tenant.name} already has a pending request (#{other.pk}, asked by "
                f"{other.requested_by.get_username()}) for {', '.join(same)}: wait for its decision, or cancel "
                f"it and ask again.",
                details={"pending_request": other.pk, "resources": same},
            )


def _decide(request_id: int, *, actor, status: str, reason: str, apply=None) -> QuotaRequest:
    """Decide a pending request once (row locked), run ``apply`` (which may return extra before/after
    detail), and record ``quota_request.<status>``. Must run inside a transaction."""
    request = QuotaRequest.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=request_id)
    if request.status != QuotaRequestStatus.PENDING:
        raise InvalidTransition(f"This request was already {request.get_status_display().lower()}.")
    request.status = status
    request.decided_by = actor
    request.decided_at = timezone.now()
    request.decision_reason = reason.strip()
    request.save()
    before, after = {"status": QuotaRequestStatus.PENDING.value}, {"status": status}
    if request.decision_reason:
        after["reason"] = request.decision_reason
    if apply is not None:
        extra_before, extra_after = apply(request)
        before.update(extra_before)
        after.update(extra_after)
    audit.record_row(f"quota_request.{status}", request, actor=actor, tenant=request.tenant, before=before, after=after)
    return request


def _raise_quota(request: QuotaRequest) -> tuple[dict, dict]:
    """Raise each asked-for limit (never lowering one) within ``CEILINGS``; the quota row is locked. A
    request stored before the ceilings (or written around the form) is refused, not applied."""
    check_within_ceilings({k: getattr(request, k) for k in REQUESTABLE})
    quota = Quota.objects.select_for_update().get(tenant=request.tenant)
    before = {k: getattr(quota, k) for k in REQUESTABLE}
    for key in REQUESTABLE:
        asked = getattr(request, key)
        if asked is not None and _raises(getattr(quota, key), asked):
            setattr(quota, key, asked)
    quota.save()
    return {"quota": before}, {"quota": {k: getattr(quota, k) for k in REQUESTABLE}}


def _require_platform_admin(actor) -> None:
    if not is_platform_admin(actor):
        raise Forbidden("Only a platform admin may decide quota requests.")


def approve_quota_request(request_id: int, *, actor, reason: str = "") -> QuotaRequest:
    """Raise the tenant's quota to what was asked, in the same transaction as the decision.
    Platform admins only."""
    _require_platform_admin(actor)
    reason = check_reason(reason, what="The decision note")
    with transaction.atomic():
        return _decide(request_id, actor=actor, status=QuotaRequestStatus.APPROVED, reason=reason, apply=_raise_quota)


def reject_quota_request(request_id: int, *, actor, reason: str) -> QuotaRequest:
    """Refuse a pending request, with a reason for the member who asked. Platform admins only."""
    _require_platform_admin(actor)
    reason = check_reason(reason, what="The decision note")
    if not reason:
        raise PortalError("Give the requester a reason for the rejection.")
    with transaction.atomic():
        return _decide(request_id, actor=actor, status=QuotaRequestStatus.REJECTED, reason=reason)


def cancel_quota_request(request_id: int, *, actor) -> QuotaRequest:
    """The member who asked withdraws a pending request (only they may)."""
    if not QuotaRequest.objects.filter(pk=request_id, requested_by_id=getattr(actor, "pk", None)).exists():
        raise Forbidden("Only the member who asked can cancel a quota request.")
    with transaction.atomic():
        return _decide(request_id, actor=actor, status=QuotaRequestStatus.CANCELLED, reason="")


def _profile_limit(quota: Quota, profile_name: str):
    """The quota's cap on ``profile_name``, or None; from the prefetched limits when the caller read them
    with the quota (the New-desktop page checks every offered template against one read)."""
    if "profile_limits" in getattr(quota, "_prefetched_objects_cache", {}):
        return next((lim for lim in quota.profile_limits.all() if lim.profile.name == profile_name), None)
    return quota.profile_limits.filter(profile__name=profile_name).first()
