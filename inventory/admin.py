from django.contrib import admin

from inventory.models import GPU, Host, VGPUProfile


class GPUInline(admin.TabularInline):
    model = GPU
    extra = 0
    fields = ("pci_address", "uuid", "model", "framebuffer_mib", "mode", "current_profile", "present")
    autocomplete_fields = ("current_profile",)


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "libvirt_uri", "cpu_cores", "memory_mib", "telemetry_source", "last_heartbeat")
    list_filter = ("state", "telemetry_source")
    search_fields = ("name", "libvirt_uri")
    inlines = [GPUInline]


@admin.register(GPU)
class GPUAdmin(admin.ModelAdmin):
    list_display = ("host", "pci_address", "model", "mode", "current_profile", "framebuffer_mib", "present")
    list_filter = ("mode", "model", "present", "host")
    search_fields = ("pci_address", "uuid", "host__name")
    autocomplete_fields = ("current_profile",)
    list_select_related = ("host", "current_profile")


@admin.register(VGPUProfile)
class VGPUProfileAdmin(admin.ModelAdmin):
    list_display = ("name", "board", "series", "framebuffer_mib", "max_per_gpu", "mig_backed", "mdev_type_id")
    list_filter = ("board", "series", "mig_backed")
    search_fields = ("name", "board")
