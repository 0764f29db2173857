from rest_framework import serializers

from audit.event_export import COLUMNS
from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [*COLUMNS]  # the same columns as the exports, chain fields included
        read_only_fields = fields
