"""Booking desktops ahead: who may, whether it fits the future, quota; and the hold that on-demand
requests respect (registered into ``allocations.services.request.CAPACITY_HOLDS``).

Every booking takes the fleet's ``CalendarLock`` row (``select_for_update``) before it reads the future,
and keeps it until it has written its occurrences: two bookings of the last capacity are decided one after
the other, and the second sees the first's occurrences. On-demand requests take the same row, shared
(exclusively only when their span reaches a booked window: ``hold_capacity``), so a request and a booking
racing for the last capacity are decided one after the other too.
"""

from __future__ import annotations

import contextvars
import math
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from allocations.exceptions import InvalidTransition, NoCapacity, NotAllowed, QuotaExceeded
from allocations.models import Desktop, DesktopTemplate, Quota
from allocations.services.quotas import _hours_within, desktop_hours_booked_this_month, utc_month
from allocations.services.request import check_offered
from audit import services as audit
from bookings import fit
from bookings.models import (
    HOLDING_STATES,
    BookedDesktop,
    Booking,
    BookingState,
    CalendarLock,
    GroupBooker,
    Occurrence,
    OccurrenceState,
)
from bookings.recurrence import windows
from core.errors import Forbidden, NotFound, PortalError
from tenancy.models import Membership, Tenant
from tenancy.roles import Role, is_platform_admin, roles_of

# The occurrence being built right now in this thread: its own hold must not refuse its desktops.
building: contextvars.ContextVar[int | None] = contextvars.ContextVar("booking_building", default=None)


def group_tenant_ids(user) -> frozenset[int]:
    """The tenants in which ``user`` books for groups: a ``GroupBooker`` row (granted per tenant by a platform
    admin in the admin) for a tenant they are still a member of. The global ``bookings.book_for_group``
    permission alone grants nothing: it would apply in every tenant the person belongs to."""
    mine = roles_of(user).tenant_ids
    if not mine:
        return frozenset()
    return frozenset(GroupBooker.objects.filter(user=user, tenant_id__in=mine).values_list("tenant_id", flat=True))


def may_book_for_group(user, tenant_id: int) -> bool:
    """Platform admins, and those granted "books for groups" in this tenant (teachers, project leads)."""
    return is_platform_admin(user) or tenant_id in group_tenant_ids(user)


def _tenant_for(actor, tenant_id: int | None) -> Tenant:
    mine = roles_of(actor).tenant_ids
    if tenant_id is None:
        if len(mine) != 1:
            raise PortalError("Say which tenant the booking is for (tenant).")
        tenant_id = next(iter(mine))
    if tenant_id not in mine and not is_platform_admin(actor):
        raise NotFound("No such tenant among yours.")
    tenant = Tenant.objects.filter(pk=tenant_id, is_active=True).first()
    if tenant is None:
        raise NotFound("No such active tenant.")
    return tenant


def _people(actor, tenant: Tenant, people_ids) -> list:
    ids = list(dict.fromkeys(people_ids or [actor.pk]))
    members = set(
        Membership.objects.filter(tenant=tenant, role=Role.TENANT_MEMBER, user_id__in=ids).values_list(
            "user_id", flat=True
        )
    )
    missing = [i for i in ids if i not in members]
    if missing:
        raise PortalError(f"Desktops go to members of {tenant.name} only; not to person id(s) {missing}.")
    return list(get_user_model().objects.filter(pk__in=ids).order_by("username"))


def _check_quota(quota: Quota, tenant: Tenant, template, count: int, spans, *, now, exclude_booking=None) -> None:
    """Concurrent desktops at each window, the longest single desktop, and desktop-hours in each month."""
    hours = spans[0][1] - spans[0][0]
    if hours > timedelta(hours=quota.max_desktop_hours):
        raise QuotaExceeded(
            f"A desktop may last at most {quota.max_desktop_hours} hours; the window is {hours}.",
            details={"resource": "desktop_hours", "allowed": quota.max_desktop_hours},
        )
    held = [
        d.expires_at or now + timedelta(hours=d.duration_hours)
        for d in Desktop.objects.holding_capacity().filter(tenant=tenant)
    ]
    others = Occurrence.objects.filter(booking__tenant=tenant, state__in=HOLDING_STATES, end__gt=now)
    if exclude_booking:
        others = others.exclude(booking_id=exclude_booking)
    others = list(others.values_list("start", "end", "booking__count"))
    for s, e in spans:
        at_once = sum(1 for until in held if until > s) + sum(n for os, oe, n in others if os < e and oe > s)
        if at_once + count > quota.max_desktops:
            raise QuotaExceeded(
                f"{tenant.name} may hold {quota.max_desktops} desktops at once; on "
                f"{timezone.localtime(s):%a %d %b %Y %H:%M} it would hold {at_once} already and this booking "
                f"adds {count}.",
                details={"resource": "desktops", "allowed": quota.max_desktops, "at": s.isoformat()},
            )
    cap = quota.max_desktop_hours_per_month
    if cap is None:
        return
    months = sorted({utc_month(s) for s, _ in spans})
    for month in months:
        needed = count * sum(_hours_within(s, e, month) for s, e in spans)
        used = desktop_hours_booked_this_month(tenant.pk, now=max(now, month[0]))
        used += sum(n * _hours_within(os, oe, month) for os, oe, n in others)
        if needed and used + needed > cap:
            raise QuotaExceeded(
                f"{tenant.name} may use {cap} desktop-hours a month; in {month[0]:%B %Y} it has "
                f"{used:.1f} used or booked and this booking needs {needed:.1f} more.",
                details={"resource": "desktop_hours_per_month", "allowed": cap, "month": f"{month[0]:%Y-%m}"},
            )


def book(
    *,
    actor,
    template_id: int,
    start: datetime,
    end: datetime,
    rrule: str = "",
    count: int | None = None,
    people: list[int] | None = None,
    tenant_id: int | None = None,
    title: str = "",
    now=None,
) -> Booking:
    """Book desktops ahead. Accepted only if every window fits the fleet's future and the tenant's quota;
    otherwise NoCapacity (409) lists each window that does not fit and why, or QuotaExceeded (409)."""
    now = now or timezone.now()
    tenant = _tenant_for(actor, tenant_id)
    chosen = _people(actor, tenant, people)
    count = count or len(chosen)
    if count < len(chosen) or count < 1 or count > 500:
        raise PortalError("Book at least one desktop per person (and at most 500).")
    group = count > 1 or any(p.pk != actor.pk for p in chosen)
    if group and not may_book_for_group(actor, tenant.pk):
        raise Forbidden("Booking several desktops, or for others, is for tenant managers and platform admins.")
    spans = windows(start, end, rrule, now=now)
    template = DesktopTemplate.objects.filter(pk=template_id, allowed_tenants=tenant).select_related("profile").first()
    template = check_offered(template, math.ceil((end - start).total_seconds() / 3600))
    with transaction.atomic():
        # The tenant's quota row first, then the calendar: the order on-demand requests take them in
        # (``hold_capacity``), so a booking and a request of one tenant never wait for each other in a circle.
        quota = Quota.objects.select_for_update().filter(tenant=tenant).first()
        if quota is None:  # as the request service answers it
            raise NotAllowed(f"{tenant.name} has no quota yet: a platform admin sets one before it can have desktops.")
        # Bookings queue here, one at a time. The row is made by the migration (made here only if it went
        # missing: then the first race is serialised by its unique index instead).
        if not list(CalendarLock.objects.select_for_update().filter(name="fleet").values_list("pk", flat=True)):
            CalendarLock.objects.get_or_create(name="fleet")
            CalendarLock.objects.select_for_update().get(name="fleet")
        _check_quota(quota, tenant, template, count, spans, now=now)
        misfits = [w for w in fit.future_fit(template, count, spans, now=now) if not w.fits]
        if misfits:
            raise NoCapacity(
                f"{len(misfits)} of {len(spans)} window(s) do not fit: " + " ".join(w.in_words() for w in misfits),
                details={
                    "resource": "future_capacity",
                    "windows": [
                        {"start": w.start.isoformat(), "end": w.end.isoformat(), "fits": w.placed, "why": w.reasons}
                        for w in misfits
                    ],
                },
            )
        booking = Booking.objects.create(
            tenant=tenant, template=template, owner=actor, count=count, start=start, end=end, rrule=rrule, title=title
        )
        booking.people.set(chosen)
        Occurrence.objects.bulk_create([Occurrence(booking=booking, start=s, end=e) for s, e in spans])
        audit.record_row(
            "booking.accepted",
            booking,
            actor=actor,
            tenant=tenant,
            text=str(booking),
            after={"template": template.name, "count": count, "start": start.isoformat(), "rrule": rrule},
        )
    return booking


def cancel_booking(booking: Booking, *, actor, now=None) -> Booking:
    """Cancel what is still ahead (built desktops keep running until their window ends)."""
    if actor.pk != booking.owner_id and not may_book_for_group(actor, booking.tenant_id):
        raise Forbidden("Only who booked it, a tenant manager or a platform admin may cancel a booking.")
    with transaction.atomic():
        Booking.objects.filter(pk=booking.pk).update(state=BookingState.CANCELLED)
        booking.occurrences.filter(state__in=HOLDING_STATES).update(state=OccurrenceState.CANCELLED)
        audit.record_row("booking.cancelled", booking, actor=actor, tenant=booking.tenant, text=str(booking))
    booking.refresh_from_db()
    return booking


def _lock_calendar(*, exclusive: bool) -> None:
    """Lock the fleet's ``CalendarLock`` row for an on-demand request, until its transaction ends.

    ``exclusive=False`` (FOR KEY SHARE): any number of requests hold it at once; a booking (FOR UPDATE)
    waits for them, and they for a booking. ``exclusive=True`` (FOR NO KEY UPDATE): requests whose time
    span reaches a booked window also queue behind each other, but not behind the requests holding it
    shared (so one never waits for another to give up a lock it holds: no deadlock). PostgreSQL only:
    SQLite runs one writer at a time anyway."""
    if connection.vendor != "postgresql":
        return
    mode = "NO KEY UPDATE" if exclusive else "KEY SHARE"
    with connection.cursor() as cur:
        cur.execute(f"SELECT id FROM {CalendarLock._meta.db_table} WHERE name = %s FOR {mode}", ["fleet"])


def hold_capacity(*, template, tenant_id: int, hours: int, now=None) -> None:
    """The hold on-demand requests respect: a desktop of ``template`` running ``hours`` from now must leave
    room for every booked window that starts within that time. Raises NoCapacity naming the booking and
    when it frees the capacity.

    Runs inside the request's transaction (``_request_desktop``), which must not take capacity a booking
    being accepted at the same moment counts as free: every request takes the calendar row shared, so it
    waits for a booking in flight and then sees its windows (and a booking waits for the requests in
    flight and then sees their desktops). Only a request whose span reaches a booked window takes the row
    exclusively, so that two of them do not each count the other's desktop as absent; the rest go on
    side by side."""
    now = now or timezone.now()
    until = now + timedelta(hours=hours)
    _lock_calendar(exclusive=False)
    holds = list(fit.upcoming_holds(now, until, exclude_occurrence=building.get()))
    if not holds:
        return
    _lock_calendar(exclusive=True)  # then read what the requests before it took (READ COMMITTED: fresh reads)
    future = fit.Future(now=now, exclude_occurrence=building.get())
    for o in holds:
        own = future.occurrences
        future.occurrences = [x for x in own if x.pk != o.pk]  # o is checked as "the booking" itself
        before = future.check(o.booking.template, o.booking.count, o.start, o.end)
        w = future.check(o.booking.template, o.booking.count, o.start, o.end, extra=[(template, until)])
        future.occurrences = own
        if before.fits and not w.fits:  # a window that no longer fits anyway is not held against others
            frees = max(x.end for x in holds if x.start < until)
            details = {"resource": "booked", "frees_at": frees.isoformat()}
            if o.booking.tenant_id == tenant_id:  # another tenant's booking is not named to this requester
                what = (
                    f"booked from {timezone.localtime(o.start):%a %d %b %H:%M} to "
                    f"{timezone.localtime(o.end):%H:%M} ({o.booking})"
                )
                details["booking"] = o.booking_id
            else:
                what = "booked for a class or project"
            raise NoCapacity(
                f"That capacity is {what}; a desktop for {hours} h would take it. "
                f"Ask for a shorter desktop, or after {timezone.localtime(frees):%a %d %b %H:%M} when it frees up.",
                details=details,
            )


def refuse_extension(desktop) -> None:
    """``lifecycle.EXTENSION_GUARDS``: a booked desktop ends with its window (``sweeps.hold_window_ends``
    puts its expiry back every minute), so extending it is refused in words, not silently undone."""
    link = BookedDesktop.objects.filter(desktop_id=desktop.pk).select_related("occurrence").first()
    if link is not None:
        end = timezone.localtime(link.occurrence.end).strftime("%Y-%m-%d %H:%M %Z")
        raise InvalidTransition(
            f"This desktop was booked for a window that ends at {end}: it ends with the window and cannot be "
            "extended. Request a desktop of your own for more time."
        )
