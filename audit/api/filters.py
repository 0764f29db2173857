import django_filters

from audit.models import AuditEvent


class AuditEventFilterSet(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    actor = django_filters.CharFilter(field_name="actor_username")
    verb_prefix = django_filters.CharFilter(field_name="verb", lookup_expr="startswith")

    class Meta:
        model = AuditEvent
        fields = [
            "verb",
            "verb_prefix",
            "object_type",
            "object_id",
            "actor",
            "actor_id",
            "tenant_id",
            "request_id",
            "since",
            "until",
        ]
