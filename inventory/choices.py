from django.db import models


class HostState(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    MAINTENANCE = "maintenance", "Maintenance"
    RETIRED = "retired", "Retired"  # kept for history: never placed on, synced or listed among active hosts


class TelemetrySource(models.TextChoices):
    NVML = "nvml", "NVML"
    SIMULATED = "simulated", "Simulated"


class GPUMode(models.TextChoices):
    VGPU = "vgpu", "vGPU"
    PASSTHROUGH = "passthrough", "Passthrough"
    FLEXIBLE = "flexible", "vGPU or whole"  # runs vGPUs, or is handed whole to one desktop while empty
    DISABLED = "disabled", "Disabled"


VGPU_MODES = (GPUMode.VGPU, GPUMode.FLEXIBLE)  # modes in which a GPU may run vGPU instances
WHOLE_MODES = (GPUMode.PASSTHROUGH, GPUMode.FLEXIBLE)  # modes in which a GPU may be handed whole to a desktop


class ProfileSeries(models.TextChoices):
    Q = "Q", "Q (virtual workstation)"
    B = "B", "B (business desktop)"
    A = "A", "A (app streaming)"
    C = "C", "C (compute)"
