import django_filters

from audit.models import AuditEvent
from core.datetimes import InstantFilter


class AuditEventFilterSet(django_filters.FilterSet):
    # core.datetimes: a date or date-time; out-of-range instants (9999-12-31T23:59:59-23:59) are refused in words
    since = InstantFilter(field_name="occurred_at", lookup_expr="gte", label="From (UTC, ISO 8601)")
    until = InstantFilter(field_name="occurred_at", lookup_expr="lt", label="Until (UTC, ISO 8601)")
    actor = django_filters.CharFilter(field_name="actor_username", label="User")
    verb_prefix = django_filters.CharFilter(field_name="verb", lookup_expr="startswith", label="Verb starts with")
    tenant = django_filters.CharFilter(field_name="tenant_name", lookup_expr="icontains", label="Tenant")

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
