from django.contrib import admin

from core.admin import AuditedAdmin, ReadOnlyInline
from inventory.models import GPU, GPUMdevType, Host, VGPUProfile
from inventory.services import hosts


class GPUInline(ReadOnlyInline, admin.TabularInline):
    model = GPU
    fields = ("pci_address", "uuid", "model", "framebuffer_mib", "mode", "current_profile", "present")


@admin.register(Host)
class HostAdmin(AuditedAdmin):
    list_display = ("name", "state", "libvirt_uri", "cpu_cores", "memory_mib", "telemetry_source", "last_heartbeat")
    readonly_fields = ("lab_xml", "libvirt_version", "last_sync_at", "last_sync_error", "telemetry_status")
    list_filter = ("state", "telemetry_source")
    search_fields = ("name", "libvirt_uri")
    inlines = [GPUInline]


class GPUMdevTypeInline(ReadOnlyInline, admin.TabularInline):
    """Discovered from the host, not typed in."""

    model = GPUMdevType
    readonly_fields = ("type_id", "type_name", "profile", "available_instances", "updated_at")


@admin.register(GPU)
class GPUAdmin(AuditedAdmin):
    inlines = [GPUMdevTypeInline]
    update_service = staticmethod(hosts.update_gpu)
    delete_service = staticmethod(hosts.delete_gpu)
    list_display = ("host", "pci_address", "model", "mode", "current_profile", "framebuffer_mib", "present")
    list_filter = ("mode", "model", "present", "host")
    search_fields = ("pci_address", "uuid", "host__name")
    autocomplete_fields = ("current_profile",)
    list_select_related = ("host", "current_profile")


@admin.register(VGPUProfile)
class VGPUProfileAdmin(AuditedAdmin):
    list_display = ("name", "board", "series", "framebuffer_mib", "max_per_gpu", "mig_backed", "mdev_type_id")
    list_filter = ("board", "series", "mig_backed")
    search_fields = ("name", "board")
