"""Who may use what: quotas, desktop templates, desktops and quota requests."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from allocations.choices import HOLDING_STATUSES, DesktopStatus, EndReason, IdleAction, QuotaRequestStatus
from allocations.querysets import DesktopQuerySet, DesktopTemplateQuerySet, QuotaRequestQuerySet
from core.limits import (
    MAX_DESKTOP_HOURS,
    MAX_DESKTOP_HOURS_PER_MONTH,
    MAX_DESKTOPS,
    MAX_FRAMEBUFFER_MIB,
    MAX_MEMORY_MIB,
    MAX_VCPUS,
)
from inventory.choices import ProfileSeries
from inventory.models import GPU, Host, VGPUProfile
from tenancy.models import Tenant


class Quota(models.Model):
    """What one tenant may hold at once. Per-profile limits live in ProfileQuota."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="quota")
    max_desktops = models.PositiveIntegerField(
        default=2,
        validators=[MaxValueValidator(MAX_DESKTOPS)],
        help_text="Concurrent desktops, counting those in flight.",
    )
    max_framebuffer_mib = models.PositiveBigIntegerField(
        default=16384,
        validators=[MaxValueValidator(MAX_FRAMEBUFFER_MIB)],
        help_text="Total vGPU framebuffer across the tenant's desktops (whole GPUs count in full).",
    )
    max_desktop_hours = models.PositiveIntegerField(
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DESKTOP_HOURS)],
        help_text="Longest single desktop.",
    )
    max_desktop_hours_per_month = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DESKTOP_HOURS_PER_MONTH)],
        help_text="Desktop-hours the tenant's desktops may use or book in one calendar month (UTC); empty: no cap.",
    )
    # What the tenant holds now (desktops in flight included): raised by the request service under this row's
    # lock, lowered when a desktop gives its capacity back (``lifecycle.free_capacity``), in the same
    # transactions, so checking a request is O(1) however many desktops the tenant has.
    desktops_held = models.PositiveIntegerField(default=0, editable=False)
    framebuffer_held_mib = models.PositiveBigIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name"]

    COUNTERS = ("desktops_held", "framebuffer_held_mib")

    def __str__(self) -> str:
        return f"Quota of {self.tenant}"

    def save(self, *args, **kwargs):
        """Saving a quota never writes the held counters (a copy read earlier would turn them back);
        they only move by the increments of requests and releases."""
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name not in self.COUNTERS
            ]
        super().save(*args, **kwargs)


class ProfileQuota(models.Model):
    """An optional cap on how many desktops of one vGPU profile a tenant may hold."""

    quota = models.ForeignKey(Quota, on_delete=models.CASCADE, related_name="profile_limits")
    profile = models.ForeignKey(VGPUProfile, on_delete=models.PROTECT, related_name="+")
    max_instances = models.PositiveIntegerField(validators=[MaxValueValidator(MAX_DESKTOPS)])

    class Meta:
        ordering = ["profile__name"]
        constraints = [models.UniqueConstraint(fields=["quota", "profile"], name="profilequota_unique_profile")]

    def __str__(self) -> str:
        return f"{self.profile} ≤ {self.max_instances}"


class DesktopTemplate(models.Model):
    """What an end user can ask for, plus vCPUs, RAM and a disk image; offered to the listed tenants.

    The GPU part is one of (``kind``):
    - ``vgpu``: one instance of a named vGPU ``profile``;
    - ``vgpu-share``: one vGPU of at least ``gpu_share_milli`` thousandths of a board, of the
      ``profile_series``, on any board in ``gpu_models`` (empty = any): the scheduler picks the
      board, and the smallest profile of that board that holds the share;
    - ``whole``: ``gpu_count`` whole GPUs of one host (passthrough), of a board in ``gpu_models``;
    - ``none``: no GPU (``gpu_count`` 0).
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    profile = models.ForeignKey(
        VGPUProfile,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="templates",
        help_text="A named vGPU profile; leave empty for a share of a board, whole GPUs or no GPU.",
    )
    gpu_share_milli = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(999)],
        help_text="vGPU of at least this share of a board, in thousandths (e.g. 250 = a quarter); the scheduler "
        "picks the board and the smallest profile of the series that holds it. A whole board: name its "
        "full-size profile, or ask for whole GPUs.",
    )
    profile_series = models.CharField(
        max_length=1, choices=ProfileSeries.choices, default=ProfileSeries.Q, help_text="Share templates: series."
    )
    gpu_models = models.JSONField(
        default=list,
        blank=True,
        help_text='Share and whole-GPU templates: the board models allowed, e.g. ["A40", "L40S"] (empty = any).',
    )
    gpu_count = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(0), MaxValueValidator(16)],
        help_text="Whole GPUs (passthrough); 0 for a desktop without a GPU.",
    )
    vcpus = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_VCPUS)])
    memory_mib = models.PositiveIntegerField(validators=[MinValueValidator(256), MaxValueValidator(MAX_MEMORY_MIB)])
    disk_image = models.CharField(max_length=255, help_text="Base image path or volume name on the host.")
    max_duration_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DESKTOP_HOURS)],
        help_text="Longest desktop of this template, in hours; empty = the tenant's quota decides alone.",
    )
    allowed_tenants = models.ManyToManyField(Tenant, blank=True, related_name="templates")
    is_active = models.BooleanField(default=True)
    # Idle desktops given back (services.idle): a running desktop whose GPU stayed below the threshold and
    # whose console had no input for the limit is warned, then after the grace period suspended or released.
    idle_limit_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(5), MaxValueValidator(7 * 24 * 60)],
        help_text="Minutes of an idle GPU and no console input before its owner is warned; empty = never.",
    )
    idle_sm_threshold_pct = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="The GPU counts as idle while its SM utilization (minute average) is below this, in percent.",
    )
    idle_action = models.CharField(max_length=10, choices=IdleAction.choices, default=IdleAction.SUSPEND)
    suspend_keeps_capacity = models.BooleanField(
        default=True,
        help_text="Suspended desktops keep their vGPU claim; untick: idle desktops are released instead.",
    )
    # Retired: offered for no new desktop, for good; kept (with its desktops, running or past) for history.
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DesktopTemplateQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(profile__isnull=True) & models.Q(gpu_share_milli__isnull=True))
                | models.Q(gpu_count=1),
                name="template_vgpu_takes_one_instance",
            ),
            models.CheckConstraint(
                condition=models.Q(profile__isnull=True) | models.Q(gpu_share_milli__isnull=True),
                name="template_profile_or_share",
            ),
            models.CheckConstraint(
                condition=models.Q(retired_at__isnull=True) | models.Q(is_active=False),
                name="template_retired_is_inactive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def kind(self) -> str:
        if self.profile_id:
            return "vgpu"
        if self.gpu_share_milli:
            return "vgpu-share"
        return "whole" if self.gpu_count else "none"

    @property
    def is_passthrough(self) -> bool:
        return self.kind == "whole"

    @property
    def idle_effective_action(self) -> str:
        """What an idle desktop of this template undergoes: suspend only where the suspended desktop keeps
        its claim (it must resume where its memory image is); otherwise it is released."""
        if self.idle_action == IdleAction.SUSPEND and self.suspend_keeps_capacity:
            return IdleAction.SUSPEND
        return IdleAction.RELEASE

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    @property
    def gpu_summary(self) -> str:
        """The GPU part in words, for pages."""
        models_ = " or ".join(self.gpu_models) if self.gpu_models else "any board"
        if self.kind == "vgpu":
            return f"vGPU {self.profile.name}"
        if self.kind == "vgpu-share":
            return f"vGPU ≥ {self.gpu_share_milli / 10:g}% of a board ({self.profile_series}-series, {models_})"
        if self.kind == "whole":
            return f"{self.gpu_count} × whole GPU ({models_})"
        return "No GPU"

    def clean(self):
        errors = {}
        if (self.profile_id or self.gpu_share_milli) and self.gpu_count != 1:
            errors["gpu_count"] = "A vGPU template takes one instance; use whole GPUs for several."
        if self.profile_id and self.gpu_share_milli:
            errors["gpu_share_milli"] = "Name a profile or a share of a board, not both."
        if self.profile_id and self.gpu_models:
            errors["gpu_models"] = "A template with a named profile runs on that profile's board; leave this empty."
        if not self.profile_id and not self.gpu_share_milli and not self.gpu_count and self.gpu_models:
            errors["gpu_models"] = "A template without a GPU names no GPU models."
        if not isinstance(self.gpu_models, list) or not all(
            isinstance(m, str) and m.strip() and len(m) <= 40 for m in self.gpu_models
        ):
            errors["gpu_models"] = 'A list of board model names, e.g. ["A40", "L40S"].'
        if self.retired_at is not None and self.is_active:
            errors["is_active"] = "A retired template is offered to nobody; make a new template instead."
        if errors:
            raise ValidationError(errors)


class Desktop(models.Model):
    """One allocation: a VM with its vGPU (or whole GPUs) on one host, for a while.

    Guarantees: while ``holds_capacity`` is true the desktop's GPU instances and host
    vCPU/RAM are counted on the GPU and Host rows, and it counts against its tenant's
    quota; both are returned exactly once, when it reaches a final status. The status
    only moves along ``choices.TRANSITIONS`` (``services.lifecycle`` is the one writer).
    """

    name = models.CharField(max_length=100)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="desktops")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="desktops")
    template = models.ForeignKey(DesktopTemplate, on_delete=models.PROTECT, related_name="desktops")
    # What was granted, copied from the template at request time (templates change; history must not).
    profile = models.ForeignKey(VGPUProfile, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    gpu_count = models.PositiveSmallIntegerField(default=1)
    vcpus = models.PositiveIntegerField()
    memory_mib = models.PositiveIntegerField()
    framebuffer_mib = models.PositiveIntegerField(help_text="What this desktop charges to the tenant's quota.")
    duration_hours = models.PositiveIntegerField()

    status = models.CharField(max_length=20, choices=DesktopStatus.choices, default=DesktopStatus.REQUESTED)
    status_reason = models.CharField(max_length=500, blank=True, help_text="Why it is in this status, for people.")
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)
    drain_reason = models.CharField(
        max_length=500, blank=True, help_text="Set when its host is drained (services.drain): the admin's reason."
    )
    holds_capacity = models.BooleanField(default=True)

    host = models.ForeignKey(Host, on_delete=models.PROTECT, null=True, blank=True, related_name="desktops")
    gpus = models.ManyToManyField(GPU, blank=True, related_name="desktops")
    mdev_uuid = models.UUIDField(null=True, blank=True, unique=True, help_text="The vGPU instance's mdev UUID.")
    domain_name = models.CharField(max_length=64, blank=True)
    domain_uuid = models.UUIDField(null=True, blank=True)
    vnc_port = models.PositiveIntegerField(null=True, blank=True)

    requested_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    # Idle desktops given back (services.idle). ``last_input_at``: the last console input the consoles app
    # noted (at most once a minute); ``idle_warned_at``: the idle warning, claimed by a conditional update;
    # ``suspended_at``: when its memory image was saved (SUSPENDED without it: the save is in progress);
    # ``resumed_at``: when it last ran again, where its idle clock starts over.
    last_input_at = models.DateTimeField(null=True, blank=True)
    idle_warned_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)

    # The worker task building or removing it holds a lease, renewed while it works (services.leases):
    # one whose worker died lapses, and the sweeper queues the task again within a minute.
    lease_holder = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    requeued_at = models.DateTimeField(null=True, blank=True)

    objects = DesktopQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["tenant", "status"], name="desktop_tenant_status_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(holds_capacity=False) | models.Q(status__in=list(HOLDING_STATUSES)),
                name="desktop_final_status_holds_nothing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk}, {self.status})"

    @property
    def is_passthrough(self) -> bool:
        return self.profile_id is None and self.gpu_count > 0


class QuotaRequest(models.Model):
    """A tenant member's request for more quota, decided by a platform admin.

    Guarantees: decided at most once; approving raises the quota in the same transaction
    (never lowers it)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="quota_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    max_desktops = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_DESKTOPS)]
    )
    max_framebuffer_mib = models.PositiveBigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_FRAMEBUFFER_MIB)]
    )
    max_desktop_hours = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_DESKTOP_HOURS)]
    )
    max_desktop_hours_per_month = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_DESKTOP_HOURS_PER_MONTH)]
    )
    reason = models.TextField()
    status = models.CharField(max_length=20, choices=QuotaRequestStatus.choices, default=QuotaRequestStatus.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = QuotaRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_desktops__isnull=False)
                | models.Q(max_framebuffer_mib__isnull=False)
                | models.Q(max_desktop_hours__isnull=False)
                | models.Q(max_desktop_hours_per_month__isnull=False),
                name="quotarequest_asks_for_something",
            ),
        ]

    def __str__(self) -> str:
        return f"Quota request #{self.pk} of {self.tenant} ({self.status})"

    def clean(self):
        asked = ("max_desktops", "max_framebuffer_mib", "max_desktop_hours", "max_desktop_hours_per_month")
        if all(getattr(self, name) is None for name in asked):
            raise ValidationError("Ask for at least one of: " + ", ".join(asked) + ".")
