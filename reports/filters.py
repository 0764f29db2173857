"""The audit log's filters: one FilterSet for the API, the exports and the page; the page shows them as
widgets (a date range in the person's zone, verbs and object types from the values present, actor and
tenant pickers)."""

from __future__ import annotations

from datetime import datetime

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from core.datetimes import InstantFilter, InvalidInstant, parse_instant
from core.timezones import label
from tenancy.models import Tenant

#: Fields whose distinct values the page offers in a select, and how long the list is kept (seconds):
#: a verb first used a minute ago can still be typed in the URL (``?verb=``), the filter is not a choice.
PRESENT_FIELDS = ("verb", "object_type")
PRESENT_TTL = 300
#: The most people offered in the actor picker (typing any name still filters).
MOST_ACTORS = 500


class AuditEventFilterSet(django_filters.FilterSet):
    # core.datetimes: a date or date-time; without a zone, the person's (the page's datetime-local inputs);
    # out-of-range instants (9999-12-31T23:59:59-23:59) are refused in words
    since = InstantFilter(field_name="occurred_at", lookup_expr="gte", label="From")
    until = InstantFilter(field_name="occurred_at", lookup_expr="lt", label="Until")
    actor = django_filters.CharFilter(field_name="actor_username", label="User")
    verb_prefix = django_filters.CharFilter(field_name="verb", lookup_expr="startswith", label="Verb starts with")
    tenant = django_filters.CharFilter(field_name="tenant_name", lookup_expr="icontains", label="Tenant name contains")

    class Meta:
        model = AuditEvent
        fields = [
            "verb",
            "verb_prefix",
            "object_type",
            "object_id",
            "actor",
            "actor_id",
            "tenant",
            "tenant_id",
            "request_id",
            "since",
            "until",
        ]


def _distinct(field: str) -> list[str]:
    if connection.vendor == "postgresql":
        # A loose index scan: one probe of the field's index per distinct value, instead of reading every
        # row of a table of millions (PostgreSQL has no skip scan before 18).
        table, column = AuditEvent._meta.db_table, AuditEvent._meta.get_field(field).column
        sql = (
            f'WITH RECURSIVE v(value) AS ((SELECT "{column}" FROM "{table}" ORDER BY 1 LIMIT 1) UNION ALL '
            f'SELECT (SELECT "{column}" FROM "{table}" WHERE "{column}" > v.value ORDER BY 1 LIMIT 1) '
            "FROM v WHERE v.value IS NOT NULL) SELECT value FROM v WHERE value IS NOT NULL"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return [row[0] for row in cursor.fetchall()]
    return list(AuditEvent.objects.order_by(field).values_list(field, flat=True).distinct())


def present_values(field: str) -> list[str]:
    """The distinct values of ``field`` (verb or object type) in the log, cached for ``PRESENT_TTL``."""
    if field not in PRESENT_FIELDS:
        raise ValueError(f"present_values: one of {PRESENT_FIELDS}")
    key = f"reports.audit.present.{field}"
    values = cache.get(key)
    if values is None:
        values = [v for v in _distinct(field) if v]
        cache.set(key, values, PRESENT_TTL)
    return values


class LocalDateTimeInput(forms.DateTimeInput):
    """``<input type=datetime-local>``: the person types their own wall-clock time (the filter reads it in
    their zone and compares in UTC); a value given in the URL in another form (``2026-11-01T08:00Z``) is
    shown as that instant in their zone."""

    input_type = "datetime-local"

    def format_value(self, value):
        if value in (None, ""):
            return None
        try:
            moment = value if isinstance(value, datetime) else parse_instant(value)
        except InvalidInstant:
            return str(value)
        local = timezone.localtime(moment)
        return local.strftime("%Y-%m-%dT%H:%M:%S" if local.second else "%Y-%m-%dT%H:%M")


def _labelled(pairs: list[tuple[str, str]], current, blank: str) -> list[tuple[str, str]]:
    choices = [("", blank), *pairs]
    if current and current not in dict(pairs):  # a shared URL naming a value the list lacks (cached, deleted)
        choices.append((current, current))
    return choices


def _choices(values, current, blank: str) -> list[tuple[str, str]]:
    return _labelled([(v, v) for v in values], current, blank)


class AuditLogFilterSet(AuditEventFilterSet):
    """The same filters as the API's, with the page's widgets. ``actors`` lists the names offered in the
    actor picker (a ``<datalist id="audit-actors">`` the template renders)."""

    @property
    def form(self):
        fresh = not hasattr(self, "_form")
        form = super().form
        if fresh:
            self._dress(form)
        return form

    def _dress(self, form) -> None:
        zone = label(timezone.localtime())
        for name, word in (("since", "From"), ("until", "Until")):
            form.fields[name].widget = LocalDateTimeInput(attrs={"step": 1})
            form.fields[name].label = f"{word} ({zone})"
        data = self.data or {}
        for name, blank in (("verb", "any verb"), ("object_type", "any type of object")):
            form.fields[name].widget = forms.Select(choices=_choices(present_values(name), data.get(name), blank))
        form.fields["object_type"].label = "Object type"
        form.fields["actor"].widget = forms.TextInput(attrs={"list": "audit-actors", "autocomplete": "off"})
        tenants = Tenant.objects.order_by("name").values_list("pk", "name")
        form.fields["tenant_id"].widget = forms.Select(
            choices=_labelled([(str(pk), name) for pk, name in tenants], data.get("tenant_id"), "any tenant")
        )
        form.fields["tenant_id"].label = "Tenant"
        form.fields["actor_id"].label = "User id"

    @property
    def actors(self) -> list[str]:
        users = get_user_model().objects.order_by("username").values_list("username", flat=True)
        return list(users[:MOST_ACTORS])

    #: The filters the page shows first; the others sit under "More filters".
    MAIN = ("since", "until", "verb", "object_type", "actor", "tenant_id")
