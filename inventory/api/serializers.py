from rest_framework import serializers

from core.limits import MAX_FRAMEBUFFER_MIB, MAX_HOST_CPU_CORES, MAX_INSTANCES_PER_GPU, MAX_MEMORY_MIB
from inventory.models import GPU, GPUMdevType, Host, VGPUProfile


class VGPUProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = VGPUProfile
        fields = [
            "id",
            "name",
            "board",
            "board_framebuffer_mib",
            "series",
            "framebuffer_mib",
            "max_per_gpu",
            "mig_backed",
            "mdev_type_id",
            "source",
        ]
        extra_kwargs = {
            "board_framebuffer_mib": {"max_value": MAX_FRAMEBUFFER_MIB},
            "framebuffer_mib": {"max_value": MAX_FRAMEBUFFER_MIB},
            "max_per_gpu": {"max_value": MAX_INSTANCES_PER_GPU},
        }


class GPUMdevTypeSerializer(serializers.ModelSerializer):
    profile = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = GPUMdevType
        fields = ["type_id", "type_name", "profile", "available_instances"]


class HostSerializer(serializers.ModelSerializer):
    gpu_count = serializers.IntegerField(read_only=True)
    queue = serializers.CharField(read_only=True)
    is_lab = serializers.BooleanField(read_only=True)

    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "libvirt_uri",
            "state",
            "cpu_cores",
            "memory_mib",
            "last_heartbeat",
            "telemetry_source",
            "telemetry_status",
            "notes",
            "console_relay",
            "maintenance_reason",
            "maintenance_since",
            "drain_stop_at",
            "retired_at",
            "gpu_count",
            "queue",
            "is_lab",
            "lab_xml",
            "libvirt_version",
            "last_sync_at",
            "last_sync_error",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "cpu_cores": {"max_value": MAX_HOST_CPU_CORES},
            "memory_mib": {"max_value": MAX_MEMORY_MIB},
        }
        read_only_fields = [
            "maintenance_reason",  # set with the state, by the maintenance and drain actions
            "maintenance_since",
            "drain_stop_at",
            "retired_at",
            "last_heartbeat",
            "telemetry_status",
            "lab_xml",
            "libvirt_version",
            "last_sync_at",
            "last_sync_error",
            "created_at",
            "updated_at",
        ]


class GPUSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)
    current_profile_name = serializers.CharField(source="current_profile.name", read_only=True, default=None)
    mdev_types = GPUMdevTypeSerializer(many=True, read_only=True)

    class Meta:
        model = GPU
        fields = [
            "id",
            "host",
            "host_name",
            "pci_address",
            "uuid",
            "model",
            "framebuffer_mib",
            "mode",
            "current_profile",
            "current_profile_name",
            "present",
            "mdev_types",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["present", "created_at", "updated_at"]
        extra_kwargs = {"framebuffer_mib": {"max_value": MAX_FRAMEBUFFER_MIB}}
