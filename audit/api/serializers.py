from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "actor_id",
            "actor_username",
            "tenant_id",
            "tenant_name",
            "verb",
            "object_type",
            "object_id",
            "object_repr",
            "before",
            "after",
            "source_ip",
            "request_id",
        ]
        read_only_fields = fields
