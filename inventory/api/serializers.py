from rest_framework import serializers

from inventory.models import GPU, Host, VGPUProfile


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


class HostSerializer(serializers.ModelSerializer):
    gpu_count = serializers.IntegerField(read_only=True)
    queue = serializers.CharField(read_only=True)

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
            "gpu_count",
            "queue",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_heartbeat", "telemetry_status", "created_at", "updated_at"]


class GPUSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)
    current_profile_name = serializers.CharField(source="current_profile.name", read_only=True, default=None)

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
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["present", "created_at", "updated_at"]
