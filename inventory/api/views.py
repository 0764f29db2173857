from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api import ServiceWriteMixin
from inventory.api.filters import GPUFilterSet, HostFilterSet, VGPUProfileFilterSet
from inventory.api.serializers import GPUSerializer, HostSerializer, VGPUProfileSerializer
from inventory.choices import TelemetrySource
from inventory.models import GPU, Host, VGPUProfile, libvirt_uri_validator
from inventory.services import hosts, profiles
from inventory.services.probe import probe_host
from tenancy.permissions import RolePermission
from tenancy.roles import ADMINS, EVERYONE, OPERATORS

# inventory never imports allocations: roles are named by their plain values here.
# Infrastructure is for operators: end users see their desktops, not the hosts behind them.


class HostStateChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class HostMaintenanceSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, help_text="Shown to the owners of desktops on this host.")


class HostTestConnectionSerializer(serializers.Serializer):
    libvirt_uri = serializers.CharField(max_length=255, validators=[libvirt_uri_validator])
    telemetry_source = serializers.ChoiceField(choices=TelemetrySource.choices, default=TelemetrySource.NVML)


class HostViewSet(ServiceWriteMixin, viewsets.ModelViewSet):
    """Hypervisor hosts. Platform admins manage them; auditors read them."""

    queryset = Host.objects.annotate(gpu_count=Count("gpus")).order_by("name")
    serializer_class = HostSerializer
    filterset_class = HostFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = OPERATORS, ADMINS
    ordering_fields = ["name", "state", "last_heartbeat"]
    create_service = staticmethod(hosts.create_host)
    update_service = staticmethod(hosts.update_host)
    delete_service = staticmethod(hosts.delete_host)

    def _set_state(self, request, state, form_class=HostStateChangeSerializer):
        form = form_class(data=request.data)
        form.is_valid(raise_exception=True)
        host = hosts.set_host_state(self.get_object(), state, actor=request.user, reason=form.validated_data["reason"])
        return Response(HostSerializer(self.get_queryset().get(pk=host.pk)).data)

    @extend_schema(request=HostMaintenanceSerializer, responses=HostSerializer)
    @action(detail=True, methods=["post"])
    def maintenance(self, request, pk=None):
        """Maintenance: running desktops stay, no new ones are placed here; their owners see ``reason``.
        To stop them at a stated time, POST /api/hosts/{id}/drain/."""
        return self._set_state(request, "maintenance", HostMaintenanceSerializer)

    @extend_schema(request=None, responses=HostSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        """Take the host out of service for good (kept for history). 409 while any desktop holds it."""
        host = hosts.retire_host(self.get_object(), actor=request.user)
        return Response(HostSerializer(self.get_queryset().get(pk=host.pk)).data)

    @extend_schema(request=HostTestConnectionSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=False, methods=["post"], url_path="test-connection")
    def test_connection(self, request):
        """Run discovery on a libvirt URI without saving anything: GPUs (PCI address, board, framebuffer,
        vGPU types), CPUs and RAM, or in ``error`` why the host could not be read (``ok`` false)."""
        form = HostTestConnectionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        return Response(probe_host(data["libvirt_uri"], data["telemetry_source"]).as_dict())

    @extend_schema(request=HostStateChangeSerializer, responses=HostSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        """Take the host out of maintenance: it takes new desktops again."""
        return self._set_state(request, "online")


class GPUViewSet(ServiceWriteMixin, viewsets.ModelViewSet):
    """Physical GPUs. Platform admins set mode and profile; auditors read them."""

    queryset = GPU.objects.select_related("host", "current_profile").prefetch_related("mdev_types__profile")
    serializer_class = GPUSerializer
    filterset_class = GPUFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = OPERATORS, ADMINS
    ordering_fields = ["host__name", "pci_address", "model"]
    create_service = staticmethod(hosts.create_gpu)
    update_service = staticmethod(hosts.update_gpu)
    delete_service = staticmethod(hosts.delete_gpu)


class VGPUProfileViewSet(ServiceWriteMixin, viewsets.ModelViewSet):
    """The vGPU profile catalog: everyone signed in reads it; platform admins curate it."""

    queryset = VGPUProfile.objects.all()
    serializer_class = VGPUProfileSerializer
    filterset_class = VGPUProfileFilterSet
    permission_classes = [RolePermission]
    read_roles, write_roles = EVERYONE, ADMINS
    ordering_fields = ["name", "board", "framebuffer_mib"]
    create_service = staticmethod(profiles.create_profile)
    update_service = staticmethod(profiles.update_profile)
    delete_service = staticmethod(profiles.delete_profile)
