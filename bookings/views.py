"""Bookings' pages: the calendar (mine, my tenant's, the fleet's), the booking form, a booking, the capacity
held for bookings (admins) and the per-person iCalendar feed."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from allocations.models import DesktopTemplate
from bookings import services
from bookings.access import get_booking_for, managed_tenant_ids, occurrences_visible_to
from bookings.feed import calendar_for
from bookings.forms import BookingForm
from bookings.held import gpus_worth, held
from bookings.models import FeedToken
from core.errors import NotFound, PortalError
from tenancy.permissions import role_required
from tenancy.roles import ACTORS, ADMINS, EVERYONE, OPERATORS, Role, roles_of

SCOPES = {"mine": "My bookings", "tenant": "My tenant's bookings", "fleet": "The fleet's bookings"}


WEEK_YEARS = range(2000, 2101)  # a week outside these is today's (0001-01-01 or 9999-12-31 would overflow)


def _week(request) -> datetime:
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        day = datetime.strptime(request.GET.get("week", ""), "%Y-%m-%d")
    except ValueError:
        day = None
    day = timezone.make_aware(day) if day is not None and day.year in WEEK_YEARS else today
    return day - timedelta(days=day.weekday())


@role_required(EVERYONE)
def calendar(request, scope: str = "mine"):
    roles = roles_of(request.user)
    if scope == "fleet" and not roles.any_of(OPERATORS) or scope == "tenant" and not managed_tenant_ids(request.user):
        raise PermissionDenied("This calendar is for tenant managers and platform admins.")
    monday = _week(request)
    rows = occurrences_visible_to(request.user, scope="auto" if scope == "fleet" else scope).filter(
        start__lt=monday + timedelta(days=7), end__gt=monday
    )
    days = [(monday + timedelta(days=i), []) for i in range(7)]
    for o in rows.order_by("start"):
        days[max(0, (timezone.localtime(o.start).date() - monday.date()).days)][1].append(o)
    feed = FeedToken.objects.get_or_create(user=request.user)[0] if roles.tenant_member else None
    return render(
        request,
        "bookings/calendar.html",
        {
            "scope": scope,
            "heading": SCOPES[scope],
            "days": days,
            "previous": (monday - timedelta(days=7)).date(),
            "next": (monday + timedelta(days=7)).date(),
            "feed_url": request.build_absolute_uri(f"/bookings/feed/{feed.token}.ics") if feed else "",
            "managed": bool(managed_tenant_ids(request.user)),
        },
    )


@role_required(ACTORS)
def booking_new(request):
    roles = roles_of(request.user)
    tenant_ids = roles.tenant_ids
    templates = DesktopTemplate.objects.filter(is_active=True, allowed_tenants__in=tenant_ids).distinct()
    people = get_user_model().objects.none()
    managed = managed_tenant_ids(request.user) or (tenant_ids if roles.platform_admin else frozenset())
    if managed:
        people = (
            get_user_model()
            .objects.filter(memberships__tenant_id__in=managed, memberships__role=Role.TENANT_MEMBER)
            .distinct()
        )
    form = BookingForm(request.POST or None, templates=templates.order_by("name"), people=people.order_by("username"))
    status = 200
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            booking = services.book(
                actor=request.user,
                template_id=d["template"],
                start=d["start"],
                end=d["end"],
                rrule=form.rule(),
                people=d["people"] or None,
                title=d["title"],
            )
        except PortalError as exc:
            form.add_error(None, exc.message)
            status = exc.status_code
        else:
            messages.success(request, f"Booked: {booking.occurrences.count()} window(s).")
            return redirect("bookings:detail", pk=booking.pk)
    elif request.method == "POST":
        status = 400
    return render(request, "bookings/form.html", {"form": form}, status=status)


@role_required(EVERYONE)
def booking_detail(request, pk: int):
    try:
        booking = get_booking_for(request.user, pk)
    except NotFound:
        raise Http404("No such booking among yours.") from None
    if request.method == "POST":
        try:
            services.cancel_booking(booking, actor=request.user)
            messages.success(request, "Booking cancelled.")
        except PortalError as exc:
            raise PermissionDenied(exc.message) from None
        return redirect("bookings:detail", pk=pk)
    return render(
        request,
        "bookings/detail.html",
        {"booking": booking, "occurrences": booking.occurrences.all(), "people": booking.people.all()},
    )


@role_required(ADMINS)
def capacity(request):
    """Capacity held for bookings, per window, the next 30 days."""
    now = timezone.now()
    rows = []
    for o in held(now, now + timedelta(days=30)).select_related("booking__tenant"):
        t = o.booking.template
        rows.append({"o": o, "gpus": round(o.booking.count * gpus_worth(t), 2), "vcpus": o.booking.count * t.vcpus})
    return render(request, "bookings/capacity.html", {"rows": rows})


def feed(request, token: str):
    """No sign-in (calendar apps cannot): the secret in the URL is the person's own."""
    row = FeedToken.objects.filter(token=token).select_related("user").first()
    if row is None or not row.user.is_active:
        raise Http404("No such calendar.")
    body = calendar_for(row.user, request.get_host().split(":")[0])
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="bookings.ics"'
    return response
