"""What exists: hypervisor hosts, their physical GPUs and the vGPU profile catalog."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from inventory.choices import VGPU_MODES, GPUMode, HostState, ProfileSeries, TelemetrySource
from inventory.querysets import GPUQuerySet, HostQuerySet

host_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,62}$",
    "Use lower-case letters, digits and hyphens (it names the host's task queue, host.<name>).",
)
libvirt_uri_validator = RegexValidator(
    r"^[a-z][a-z0-9+.-]*://\S*$",
    "A libvirt URI looks like qemu:///system, qemu+ssh://host.example/system or test:///path/lab.xml.",
)
pci_address_validator = RegexValidator(
    r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$",
    "A PCI address looks like 0000:41:00.0 (domain:bus:slot.function, lower-case hex).",
)


class VGPUProfile(models.Model):
    """One NVIDIA vGPU profile of one board, e.g. ``A40-8Q``.

    Guarantees: ``max_per_gpu × framebuffer_mib`` never exceeds the board's
    framebuffer, and the name's series letter matches ``series``.
    """

    name = models.CharField(max_length=40, unique=True, help_text="e.g. A40-8Q, or A100-1-5C when MIG-backed.")
    board = models.CharField(max_length=40, db_index=True, help_text="GPU board model, e.g. A40.")
    board_framebuffer_mib = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    series = models.CharField(max_length=1, choices=ProfileSeries.choices)
    framebuffer_mib = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    max_per_gpu = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    mig_backed = models.BooleanField(default=False)
    mdev_type_id = models.CharField(
        max_length=40,
        blank=True,
        help_text="libvirt mdev type id (nvidia-NNN); differs per driver release, filled in by discovery.",
    )
    source = models.CharField(max_length=200, blank=True, help_text="Where the figures come from.")

    class Meta:
        ordering = ["board", "series", "framebuffer_mib"]
        verbose_name = "vGPU profile"
        constraints = [
            models.CheckConstraint(condition=models.Q(max_per_gpu__gte=1), name="vgpuprofile_max_per_gpu_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        errors = {}
        if self.name and self.series and not self.name.endswith(self.series):
            errors["series"] = f"Profile {self.name} does not end with its series letter {self.series}."
        if self.board and self.name and not self.name.startswith(f"{self.board}-"):
            errors["name"] = f"Profile {self.name} does not start with its board {self.board}-."
        if self.framebuffer_mib and self.max_per_gpu and self.board_framebuffer_mib:
            if self.framebuffer_mib * self.max_per_gpu > self.board_framebuffer_mib:
                errors["max_per_gpu"] = (
                    f"{self.max_per_gpu} × {self.framebuffer_mib} MiB exceeds the board's "
                    f"{self.board_framebuffer_mib} MiB."
                )
        if errors:
            raise ValidationError(errors)


class Host(models.Model):
    """A hypervisor host reached through libvirt. Only ONLINE hosts take new desktops."""

    name = models.CharField(max_length=63, unique=True, validators=[host_name_validator])
    libvirt_uri = models.CharField(
        max_length=255,
        validators=[libvirt_uri_validator],
        help_text="qemu:///system, qemu+ssh://host/system, qemu+tls://…, or test:///path for the lab.",
    )
    state = models.CharField(max_length=20, choices=HostState.choices, default=HostState.OFFLINE, db_index=True)
    cpu_cores = models.PositiveIntegerField(default=0, help_text="Logical CPUs available to guests.")
    memory_mib = models.PositiveBigIntegerField(default=0, help_text="RAM available to guests, MiB.")
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    telemetry_source = models.CharField(
        max_length=20,
        choices=TelemetrySource.choices,
        default=TelemetrySource.NVML,
        help_text="Chosen per host, never silently: a host without NVML must be set to simulated explicitly.",
    )
    telemetry_status = models.CharField(max_length=200, blank=True, help_text="Last telemetry error, empty when OK.")
    vcpus_used = models.PositiveIntegerField(default=0, help_text="vCPUs claimed by desktops placed here.")
    memory_used_mib = models.PositiveBigIntegerField(default=0, help_text="RAM claimed by desktops placed here.")
    capacity_version = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text="Moved by every change to this host or its GPUs (claims and releases in the same UPDATE as the "
        "counters; saves of the host or its GPU rows), so the scheduler's cache re-reads only hosts that changed. "
        "On PostgreSQL it is the id of the last transaction that changed them.",
    )
    lab_xml = models.CharField(
        max_length=500,
        blank=True,
        help_text="Lab hosts only: the lab's node XML describing its GPUs; their vGPUs are kept by the lab's "
        "store. Empty on real hosts.",
    )
    console_relay = models.CharField(
        max_length=255,
        blank=True,
        help_text="host:port of the console relay beside this host's worker; empty = PORTAL_CONSOLE_RELAY",
    )
    passthrough_capable = models.BooleanField(
        default=True,
        help_text="Whether libvirt can hand this host's PCI devices to guests (VFIO, IOMMU on), as its last sync "
        "found. If not, its GPUs serve vGPUs only: no desktop gets a whole GPU here.",
    )
    passthrough_note = models.CharField(
        max_length=500, blank=True, help_text="Why (or why not), in libvirt's words, for admins."
    )
    libvirt_version = models.CharField(max_length=20, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.CharField(max_length=500, blank=True)
    last_reconciled_at = models.DateTimeField(null=True, blank=True, editable=False)
    reconcile_problems = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text='What the last reconcile could not fix or left alone: [{"what": ..., "detail": ...}].',
    )
    notes = models.TextField(blank=True)
    maintenance_reason = models.CharField(
        max_length=500, blank=True, help_text="Why the host is in maintenance (or drained), shown to affected owners."
    )
    maintenance_since = models.DateTimeField(null=True, blank=True)
    drain_stop_at = models.DateTimeField(
        null=True, blank=True, help_text="Drained: when its running desktops are stopped. Empty when not drained."
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        Host.objects.touch(self.pk)  # state, CPU or RAM may have changed: the scheduler reads this host again

    @property
    def is_lab(self) -> bool:
        return bool(self.lab_xml)

    @property
    def queue(self) -> str:
        """The Celery queue whose worker is the only process touching this host's libvirt."""
        return f"host.{self.name}"


class GPU(models.Model):
    """A physical GPU in a host.

    Modes: ``vgpu`` serves vGPU instances, ``passthrough`` is handed whole to one desktop,
    ``flexible`` does either (vGPUs of one profile, or whole while it holds none: libvirt's
    managed PCI hostdev moves it to vfio-pci for that desktop and back afterwards).

    Guarantees: a GPU in passthrough or disabled mode runs no vGPU profile, and
    the profile a GPU runs belongs to its own board model.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="gpus")
    pci_address = models.CharField(max_length=12, validators=[pci_address_validator])
    uuid = models.CharField(max_length=64, unique=True, null=True, blank=True, help_text="NVML UUID (GPU-…).")
    model = models.CharField(max_length=40, db_index=True, help_text="Board model, e.g. A40.")
    framebuffer_mib = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    mode = models.CharField(max_length=20, choices=GPUMode.choices, default=GPUMode.VGPU, db_index=True)
    current_profile = models.ForeignKey(
        VGPUProfile,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="gpus",
        help_text="The one profile type this GPU runs now (equal-size mode); empty when it holds no vGPU.",
    )
    instances_used = models.PositiveSmallIntegerField(
        default=0,
        help_text="vGPU instances (or 1 for a passthrough GPU) claimed by desktops. Changed only by conditional "
        "updates in the scheduler, so two requests can never both take the last one.",
    )
    present = models.BooleanField(default=True, help_text="False when discovery no longer finds it (drift).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GPUQuerySet.as_manager()

    class Meta:
        ordering = ["host__name", "pci_address"]
        verbose_name = "GPU"
        constraints = [
            models.UniqueConstraint(fields=["host", "pci_address"], name="gpu_unique_pci_address_per_host"),
            models.CheckConstraint(
                condition=models.Q(mode__in=list(VGPU_MODES)) | models.Q(current_profile__isnull=True),
                name="gpu_profile_only_in_vgpu_modes",
            ),
            models.CheckConstraint(
                condition=models.Q(instances_used=0)
                | models.Q(current_profile__isnull=False)
                | ~models.Q(mode=GPUMode.VGPU),
                name="gpu_vgpus_in_use_have_a_profile",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host.name}/{self.pci_address} ({self.model})"

    LOCKED_WHILE_IN_USE = ("mode", "current_profile", "model", "host")

    def save(self, *args, **kwargs):
        """Saving a GPU row marks its host changed (after the row: callers lock the host first, like claims)."""
        super().save(*args, **kwargs)
        Host.objects.touch(self.host_id)

    def delete(self, *args, **kwargs):
        host_id = self.host_id
        result = super().delete(*args, **kwargs)
        Host.objects.touch(host_id)
        return result

    def changes_blocked_by_desktops(self) -> list[str]:
        """Fields changed (against the stored row) that may not change while desktops hold instances."""
        if not self.pk:
            return []
        stored = (
            GPU.objects.filter(pk=self.pk).values("instances_used", "mode", "current_profile", "model", "host").first()
        )
        if not stored or not stored["instances_used"]:
            return []
        current = {
            "mode": self.mode,
            "current_profile": self.current_profile_id,
            "model": self.model,
            "host": self.host_id,
        }
        return [name for name in self.LOCKED_WHILE_IN_USE if stored[name] != current[name]]

    def clean(self):
        blocked = self.changes_blocked_by_desktops()
        if blocked:
            raise ValidationError(
                f"Desktops hold instances on this GPU; release them before changing {', '.join(blocked)}."
            )
        if self.mode not in VGPU_MODES and self.current_profile_id:
            raise ValidationError({"current_profile": f"A GPU in {self.mode} mode cannot run a vGPU profile."})
        if self.current_profile_id and self.current_profile.board != self.model:
            raise ValidationError(
                {
                    "current_profile": f"Profile {self.current_profile.name} is for {self.current_profile.board}, "
                    f"not for this {self.model}."
                }
            )


class GPUMdevType(models.Model):
    """A vGPU type one GPU offers, as its host last reported it (ids differ per driver release).

    ``available_instances`` is the host's own figure at the last sync; a real board in
    equal-size mode reports 0 for every type but the one it runs.
    """

    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="mdev_types")
    type_id = models.CharField(max_length=40)
    type_name = models.CharField(max_length=80)
    profile = models.ForeignKey(
        VGPUProfile,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The catalog profile of the same name; empty when the catalog lacks it.",
    )
    available_instances = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["gpu", "type_name"]
        verbose_name = "GPU mdev type"
        constraints = [models.UniqueConstraint(fields=["gpu", "type_id"], name="gpumdevtype_unique_type_per_gpu")]

    def __str__(self) -> str:
        return f"{self.gpu}: {self.type_name} ({self.type_id}) × {self.available_instances}"


class RealField(models.FloatField):
    """A 4-byte float (PostgreSQL ``real``): a utilization figure needs no more than 6 digits."""

    def db_type(self, connection):
        return "real"


class SampleSeries(models.Model):
    """The small integer key of one GPU board's samples (``mdev_uuid`` empty) or one vGPU instance's.

    Sample rows carry this 4-byte id instead of the GPU and a 36-character uuid each."""

    id = models.AutoField(primary_key=True)
    gpu = models.ForeignKey(GPU, on_delete=models.CASCADE, related_name="sample_series")
    mdev_uuid = models.CharField(max_length=36, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["gpu", "mdev_uuid"], name="sampleseries_one_per_instance")]

    def __str__(self) -> str:
        return f"{self.gpu} {self.mdev_uuid or 'GPU'}"


class _Figures(models.Model):
    """The figures of one reading; board-only ones (total FB, temperature, power) are null for a vGPU."""

    sm_util = RealField()
    mem_util = RealField()
    fb_used_mib = models.IntegerField()
    encoder_util = RealField(null=True, blank=True)
    decoder_util = RealField(null=True, blank=True)
    fb_total_mib = models.IntegerField(null=True, blank=True)
    temperature_c = RealField(null=True, blank=True)
    power_w = RealField(null=True, blank=True)

    class Meta:
        abstract = True


class RawSample(_Figures):
    """One reading, kept PORTAL_RAW_RETENTION_H hours. On PostgreSQL the table is partitioned by hour
    (``services.sample_storage``): retention drops whole partitions. Its only index is the key."""

    pk = models.CompositePrimaryKey("series", "sampled_at")
    sampled_at = models.DateTimeField()
    # No database constraint: a foreign-key check per inserted row is thousands a second at a large fleet;
    # a series goes only with its GPU, and its samples with it (Django's cascade).
    series = models.ForeignKey(
        SampleSeries, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )

    class Meta:
        ordering = ["sampled_at"]

    def __str__(self) -> str:
        return f"series {self.series_id} @ {self.sampled_at:%H:%M:%S}: SM {self.sm_util}%"


class LatestSample(_Figures):
    """The newest reading of each series, upserted by ingest: what /metrics and the fleet event read
    (a few thousand rows) instead of searching hours of raw samples."""

    series = models.OneToOneField(SampleSeries, on_delete=models.CASCADE, primary_key=True, related_name="latest")
    sampled_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"series {self.series_id} latest @ {self.sampled_at:%H:%M:%S}"


class MinuteBlock(models.Model):
    """One series' minute averages for one hour, packed (``services.sample_storage.pack_minutes``):
    a minute costs a few bytes instead of a row. Written once when the hour is complete; kept
    PORTAL_MINUTE_RETENTION_D days (daily partitions on PostgreSQL)."""

    pk = models.CompositePrimaryKey("series", "hour")
    hour = models.DateTimeField()
    series = models.ForeignKey(
        SampleSeries, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    data = models.BinaryField()

    class Meta:
        ordering = ["hour"]

    def __str__(self) -> str:
        return f"series {self.series_id} minutes of {self.hour:%Y-%m-%d %H}h"


class RollupWatermark(models.Model):
    """Up to where (exclusive) raw samples have been rolled up into minute blocks."""

    name = models.CharField(max_length=40, primary_key=True)
    upto = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} < {self.upto:%Y-%m-%d %H:%M}"


class PlacementFailure(models.Model):
    """How often requests found no capacity, by reason (for /metrics); one counter row per reason."""

    reason = models.CharField(max_length=40, unique=True)
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.reason}: {self.count}"
