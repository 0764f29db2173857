"""A person's bookings as an iCalendar feed (RFC 5545): one VEVENT per occurrence, expanded (calendar apps
need no RRULE support, and cancelled or no-show windows say so in their status)."""

from __future__ import annotations

from datetime import UTC

from django.utils import timezone

from bookings.models import Occurrence, OccurrenceState
from tenancy.models import Membership

PRODID = "-//GPU Portal//Bookings//EN"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _utc(value) -> str:
    return f"{value.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def _fold(line: str) -> list[str]:
    """Lines longer than 75 octets continue on the next line after one space (RFC 5545 3.1)."""
    out, raw = [], line.encode()
    while len(raw) > 75:
        cut = 75
        while (raw[cut] & 0xC0) == 0x80:  # never split a UTF-8 character
            cut -= 1
        out.append(raw[:cut].decode())
        raw = b" " + raw[cut:]
    out.append(raw.decode())
    return out


def calendar_for(user, host: str) -> str:
    occurrences = (
        # only tenants the person is still a member of: one who left keeps no view of its bookings
        Occurrence.objects.filter(
            booking__people=user, booking__tenant_id__in=Membership.objects.filter(user=user).values("tenant_id")
        )
        .select_related("booking__template")
        .order_by("start", "pk")
        .distinct()
    )
    stamp = _utc(timezone.now())
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN", "METHOD:PUBLISH"]
    for o in occurrences:
        status = "CANCELLED" if o.state in (OccurrenceState.CANCELLED, OccurrenceState.REFUSED) else "CONFIRMED"
        lines += [
            "BEGIN:VEVENT",
            f"UID:booking-{o.booking_id}-occurrence-{o.pk}@{host}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{_utc(o.start)}",
            f"DTEND:{_utc(o.end)}",
            f"SUMMARY:{_escape(str(o.booking))}",
            f"DESCRIPTION:{_escape(f'{o.booking.template.name} desktop, {o.get_state_display()}. {o.note}'.strip())}",
            f"STATUS:{status}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(part + "\r\n" for line in lines for part in _fold(line))
