"""POST /api/hosts/<id>/drain/: force-drain a host (``services.drain``), for platform admins. Beside the
host API (``inventory.api``), which cannot reach allocations."""

from __future__ import annotations

from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from allocations.services.drain import drain_host
from core.datetimes import HINT, InvalidInstant, parse_instant
from inventory.api.serializers import HostSerializer
from inventory.models import Host
from tenancy.permissions import RolePermission
from tenancy.roles import ADMINS, NOBODY


class HostDrainSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, help_text="Shown to the owner of every desktop on the host.")
    stop_at = serializers.CharField(
        max_length=64,
        help_text=f'When its running desktops stop: {HINT}, or "now". Not before now.',
    )

    def validate_stop_at(self, value):
        if value.strip().lower() == "now":
            return timezone.now()
        try:
            return parse_instant(value)
        except InvalidInstant as exc:
            raise serializers.ValidationError(str(exc)) from None


class HostDrainResultSerializer(serializers.Serializer):
    host = HostSerializer()
    stop_at = serializers.DateTimeField()
    notified = serializers.ListField(child=serializers.IntegerField(), help_text="Desktops whose owners were told.")
    stopped = serializers.ListField(child=serializers.IntegerField(), help_text="Desktops stopped at once.")


class HostDrainView(APIView):
    """Put the host in maintenance and stop every desktop on it at ``stop_at`` (or its own end, if sooner);
    each owner is told at once, live and on the desktop's page. ``stop_at`` = now stops them now."""

    permission_classes = [RolePermission]
    read_roles, write_roles = NOBODY, ADMINS

    @extend_schema(request=HostDrainSerializer, responses=HostDrainResultSerializer)
    def post(self, request, pk):
        host = get_object_or_404(Host.objects.active(), pk=pk)
        form = HostDrainSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        result = drain_host(host, actor=request.user, **form.validated_data)
        return Response(
            HostDrainResultSerializer(
                {
                    "host": Host.objects.annotate(gpu_count=Count("gpus")).get(pk=host.pk),
                    "stop_at": result.stop_at,
                    "notified": result.notified,
                    "stopped": result.stopped,
                }
            ).data
        )
