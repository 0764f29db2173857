"""Instants people type (``since``/``until`` filters, report periods): one parser for every filter and form.

An ISO 8601 date-time (a zone offset or ``Z``; without one, the current zone) or a date (its start). A
value that is a valid date-time but leaves the years Python and the databases hold once converted to UTC
(``9999-12-31T23:59:59-23:59``) is refused in words: it used to pass the form and fail in the query as a
500, or, in a streamed export, after the response had begun."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import django_filters
from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

HINT = "an ISO date or date-time, e.g. 2026-11-01 or 2026-11-01T08:00Z"


class InvalidInstant(ValueError):
    """The text is not an instant the portal can search by; ``str()`` says why, in words."""


def in_range(moment: datetime) -> datetime:
    """``moment`` (aware), if it is also a valid instant in UTC; else InvalidInstant."""
    try:
        moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInstant(f"{moment.isoformat()} is out of range: years 1 to 9999 in UTC only.") from None
    return moment


def parse_instant(text: str) -> datetime:
    """``text`` as an aware datetime (see the module), or InvalidInstant saying what is expected."""
    text = str(text).strip()
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            moment = datetime.combine(day, time.min) if day is not None else None
    except ValueError:  # well-formed but impossible: 2026-02-30, hour 25
        moment = None
    if moment is None:
        raise InvalidInstant(f"Expected {HINT}.")
    if timezone.is_naive(moment):
        try:
            moment = timezone.make_aware(moment)
        except (OverflowError, ValueError):
            raise InvalidInstant(f"{text} is out of range: years 1 to 9999 in UTC only.") from None
    return in_range(moment)


class InstantField(forms.Field):
    """A form field for ``parse_instant``: its message on a bad value, a datetime in cleaned_data."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            if isinstance(value, datetime):
                return in_range(value if timezone.is_aware(value) else timezone.make_aware(value))
            if isinstance(value, date):
                value = value.isoformat()
            return parse_instant(value)
        except InvalidInstant as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class InstantFilter(django_filters.Filter):
    """A django-filter filter on a datetime field that parses its value with ``parse_instant``."""

    field_class = InstantField
