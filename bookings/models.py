"""Bookings: desktops of a template held for a future window, once or recurring, and the windows themselves.

Guarantees: a booking's occurrences are written once, when it is accepted (``services.book``), and each was
checked to fit the fleet's future then; ``Occurrence.state`` only moves scheduled → provisioned → done or
no_show (or refused/cancelled); each desktop built for an occurrence is linked to it and to its person
(``BookedDesktop``), so the end and no-show sweeps find exactly what a window built.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


class BookingState(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    CANCELLED = "cancelled", "Cancelled"


class OccurrenceState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    PROVISIONED = "provisioned", "Provisioned"
    DONE = "done", "Done"
    NO_SHOW = "no_show", "No-show"
    REFUSED = "refused", "Refused"  # could not be built when its time came (capacity or quota changed)
    CANCELLED = "cancelled", "Cancelled"


#: Occurrences that hold capacity ahead: their desktops are not built yet.
HOLDING_STATES = (OccurrenceState.SCHEDULED,)


class Booking(models.Model):
    """``count`` desktops of ``template`` for ``people`` (one desktop each, or ``count`` for the owner alone),
    in the window ``start``–``end``, repeated by ``rrule`` (iCalendar RRULE, empty for once)."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="bookings")
    template = models.ForeignKey("allocations.DesktopTemplate", on_delete=models.PROTECT, related_name="bookings")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bookings_made")
    people = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="bookings", blank=True)
    title = models.CharField(max_length=100, blank=True)
    count = models.PositiveIntegerField(default=1)
    start = models.DateTimeField()
    end = models.DateTimeField()
    rrule = models.CharField(max_length=500, blank=True, help_text="iCalendar RRULE, e.g. FREQ=WEEKLY;COUNT=12")
    state = models.CharField(max_length=20, choices=BookingState.choices, default=BookingState.ACCEPTED)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["start", "id"]
        # Kept for old grants only: by itself it no longer lets anyone book for a group (see GroupBooker).
        permissions = [("book_for_group", "Can book several desktops for a group (teachers, project leads)")]

    def __str__(self) -> str:
        return self.title or f"{self.template} × {self.count}"

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


class Occurrence(models.Model):
    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="occurrences")
    start = models.DateTimeField(db_index=True)
    end = models.DateTimeField(db_index=True)
    state = models.CharField(max_length=20, choices=OccurrenceState.choices, default=OccurrenceState.SCHEDULED)
    note = models.CharField(max_length=500, blank=True, help_text="What happened, for people.")

    class Meta:
        ordering = ["start", "id"]
        indexes = [models.Index(fields=["state", "start"], name="occurrence_state_start_idx")]

    def __str__(self) -> str:
        return f"{self.booking} {self.start:%Y-%m-%d %H:%M}"


class BookedDesktop(models.Model):
    """One desktop built for an occurrence, for one person."""

    occurrence = models.ForeignKey(Occurrence, on_delete=models.CASCADE, related_name="desktops")
    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    desktop = models.OneToOneField(
        "allocations.Desktop", on_delete=models.SET_NULL, null=True, blank=True, related_name="booking_link"
    )
    no_show = models.BooleanField(default=False)
    refused = models.CharField(max_length=500, blank=True, help_text="Why it could not be built.")

    def __str__(self) -> str:
        return f"{self.occurrence} for {self.person}"


class MaintenanceWindow(models.Model):
    """A host's planned maintenance: the future-fit check counts the host as missing during it."""

    host = models.ForeignKey("inventory.Host", on_delete=models.CASCADE, related_name="maintenance_windows")
    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["start"]

    def __str__(self) -> str:
        return f"{self.host} maintenance {self.start:%Y-%m-%d %H:%M}"


class CalendarLock(models.Model):
    """One row per fleet: every booking locks it (``select_for_update``) while it checks and writes, so two
    bookings of the last capacity are decided one after the other."""

    name = models.CharField(max_length=40, unique=True)

    def __str__(self) -> str:
        return self.name


def new_feed_token() -> str:
    return secrets.token_urlsafe(24)


class FeedToken(models.Model):
    """A person's secret for their iCalendar feed URL (calendar apps cannot sign in)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="booking_feed")
    token = models.CharField(max_length=64, unique=True, default=new_feed_token)

    def __str__(self) -> str:
        return f"calendar feed of {self.user}"


class GroupBooker(models.Model):
    """A person who may book for a group (several desktops, or for others) in ONE tenant, and cancel that
    tenant's bookings: a teacher or project lead there. Granted by platform admins in the admin; it counts
    only while the person is still a member of the tenant."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="group_booker_of")
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="group_bookers")
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="group_booker_once_per_tenant")]

    def __str__(self) -> str:
        return f"{self.user} books for groups in {self.tenant}"
