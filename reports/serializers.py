from rest_framework import serializers

from audit.event_export import COLUMNS
from audit.models import AuditEvent
from reports.exports import KINDS
from reports.models import ExportJob


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [*COLUMNS]  # the same columns as the exports, chain fields included
        read_only_fields = fields


class ExportJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ExportJob
        fields = [
            "id",
            "kind",
            "fmt",
            "filters",
            "status",
            "rows",
            "manifest",
            "error",
            "created_at",
            "finished_at",
            "requested_by_username",
        ]
        read_only_fields = fields


class ExportJobRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=list(KINDS))
    format = serializers.ChoiceField(choices=["csv", "json", "ndjson"])
    filters = serializers.DictField(child=serializers.CharField(), required=False)
