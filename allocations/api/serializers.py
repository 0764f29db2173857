from rest_framework import serializers

from allocations.models import Desktop, DesktopTemplate, ProfileQuota, Quota, QuotaRequest
from allocations.services.access import desktop_fields_hidden_from
from allocations.services.people import NEW_ACCOUNT_NOTE
from core.limits import MAX_DESKTOP_HOURS, MAX_ID, MAX_REASON_CHARS
from inventory.models import VGPUProfile
from tenancy.models import Membership, Tenant
from tenancy.roles import sees_everything


class ProfileQuotaSerializer(serializers.ModelSerializer):
    profile = serializers.SlugRelatedField(slug_field="name", queryset=VGPUProfile.objects.all())

    class Meta:
        model = ProfileQuota
        fields = ["profile", "max_instances"]


class QuotaSerializer(serializers.ModelSerializer):
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    profile_limits = ProfileQuotaSerializer(many=True, required=False)

    class Meta:
        model = Quota
        fields = [
            "id",
            "tenant",
            "tenant_name",
            "max_desktops",
            "max_framebuffer_mib",
            "max_desktop_hours",
            "max_desktop_hours_per_month",
            "profile_limits",
            "updated_at",
        ]
        read_only_fields = ["tenant", "updated_at"]

    def validate_profile_limits(self, value):
        names = [item["profile"].name for item in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Each profile may appear once; repeated: {', '.join(duplicates)}.")
        return value


class QuotaUsageSerializer(serializers.Serializer):
    """One limit beside its use now (``services.quotas.QuotaLine``)."""

    key = serializers.CharField()
    label = serializers.CharField()
    used = serializers.FloatField()
    allowed = serializers.IntegerField()
    unit = serializers.CharField()
    percent = serializers.IntegerField()


class QuotaFieldsSerializer(serializers.ModelSerializer):
    """The quota given when creating a tenant (all optional)."""

    class Meta:
        model = Quota
        fields = ["max_desktops", "max_framebuffer_mib", "max_desktop_hours", "max_desktop_hours_per_month"]


class TenantSerializer(serializers.ModelSerializer):
    quota = QuotaFieldsSerializer(required=False)

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "description", "is_active", "quota", "created_at"]
        read_only_fields = ["created_at"]


class TenantUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "description", "is_active", "created_at"]
        read_only_fields = ["created_at"]


class PersonField(serializers.CharField):
    """A person: their username on the way out; a username or an email address on the way in (the service
    finds the account, or makes one: ``services.people``)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=254, **kwargs)

    def to_representation(self, value):
        return value.get_username() if hasattr(value, "get_username") else str(value)


class MembershipSerializer(serializers.ModelSerializer):
    user = PersonField(help_text="Username or email address; a new address gets an account without a password.")
    tenant_name = serializers.CharField(source="tenant.name", read_only=True, default=None)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if getattr(instance, "account_created", False):  # just made by this request (services.people.add_member)
            data["account_created"] = True
            data["note"] = NEW_ACCOUNT_NOTE.format(username=instance.user.get_username())
        return data

    class Meta:
        model = Membership
        fields = ["id", "user", "tenant", "tenant_name", "role", "created_at"]
        read_only_fields = ["created_at"]
        validators = []  # uniqueness is checked by the model (full_clean) with a clearer message


class DesktopTemplateSerializer(serializers.ModelSerializer):
    profile = serializers.SlugRelatedField(
        slug_field="name", queryset=VGPUProfile.objects.all(), allow_null=True, required=False
    )
    allowed_tenants = serializers.PrimaryKeyRelatedField(many=True, queryset=Tenant.objects.all(), required=False)
    kind = serializers.CharField(read_only=True, help_text="vgpu | vgpu-share | whole | none")
    gpu_summary = serializers.CharField(read_only=True)
    is_passthrough = serializers.BooleanField(read_only=True)
    gpu_models = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        help_text="Board models a share or whole-GPU template may use; empty = any.",
    )
    framebuffer_mib = serializers.SerializerMethodField()

    class Meta:
        model = DesktopTemplate
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "gpu_summary",
            "profile",
            "gpu_share_milli",
            "profile_series",
            "gpu_models",
            "is_passthrough",
            "gpu_count",
            "framebuffer_mib",
            "vcpus",
            "memory_mib",
            "disk_image",
            "max_duration_hours",
            "allowed_tenants",
            "is_active",
            "idle_limit_minutes",
            "idle_sm_threshold_pct",
            "idle_action",
            "suspend_keeps_capacity",
            "retired_at",
            "created_at",
        ]
        read_only_fields = ["created_at", "retired_at"]

    def get_framebuffer_mib(self, obj) -> int | None:
        """vGPU framebuffer of one desktop of a named profile; null otherwise (known once placed)."""
        return obj.profile.framebuffer_mib if obj.profile_id else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None and not sees_everything(request.user):
            # An end user does not learn which other tenants share a template.
            data.pop("allowed_tenants", None)
        return data


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    tenants = serializers.ListField(child=serializers.DictField())


class DesktopSerializer(serializers.ModelSerializer):
    template_name = serializers.CharField(source="template.name", read_only=True)
    profile = serializers.SlugRelatedField(slug_field="name", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    host_name = serializers.SerializerMethodField()
    gpu_uuids = serializers.SerializerMethodField()

    class Meta:
        model = Desktop
        fields = [
            "id",
            "name",
            "tenant",
            "tenant_name",
            "owner",
            "template",
            "template_name",
            "profile",
            "gpu_count",
            "vcpus",
            "memory_mib",
            "framebuffer_mib",
            "duration_hours",
            "status",
            "status_reason",
            "end_reason",
            "host_name",
            "gpu_uuids",
            "mdev_uuid",
            "domain_name",
            "vnc_port",
            "requested_at",
            "status_changed_at",
            "started_at",
            "expires_at",
            "ended_at",
            "idle_warned_at",
            "suspended_at",
        ]
        read_only_fields = fields

    def get_host_name(self, obj) -> str | None:
        return obj.host.name if obj.host_id else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        # Hosts and GPUs are the operators' business (README): end users see their desktop, not where.
        for key in desktop_fields_hidden_from(request.user if request is not None else None):
            data.pop(key, None)
        return data

    def get_gpu_uuids(self, obj) -> list[str]:
        return [g.uuid or g.pci_address for g in obj.gpus.all()]


class DesktopRequestSerializer(serializers.Serializer):
    template = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    duration_hours = serializers.IntegerField(min_value=1, max_value=MAX_DESKTOP_HOURS)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    tenant = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


class DesktopExtendSerializer(serializers.Serializer):
    hours = serializers.IntegerField(min_value=1, max_value=MAX_DESKTOP_HOURS)


class QuotaIncreaseSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    tenant = serializers.IntegerField(source="tenant_id", required=False, min_value=1, max_value=MAX_ID)
    # the numbers' bounds come from the model's validators (core.limits); the service checks both again
    reason = serializers.CharField(max_length=MAX_REASON_CHARS)

    class Meta:
        model = QuotaRequest
        fields = [
            "id",
            "tenant",
            "tenant_name",
            "requested_by",
            "max_desktops",
            "max_framebuffer_mib",
            "max_desktop_hours",
            "max_desktop_hours_per_month",
            "reason",
            "status",
            "decided_by",
            "decided_at",
            "decision_reason",
            "created_at",
        ]
        read_only_fields = ["status", "decided_by", "decided_at", "decision_reason", "created_at"]


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=MAX_REASON_CHARS)


class HostVerdictSerializer(serializers.Serializer):
    host = serializers.CharField()
    state = serializers.CharField()
    fits = serializers.BooleanField()
    chosen = serializers.BooleanField(help_text="The deployment's policy would place the next desktop here.")
    reason = serializers.CharField(help_text="Why not, in words; what it would get when it fits.")


class TemplatePlacementSerializer(serializers.Serializer):
    """Where one desktop of a template could run now (documentation of the placement action's answer)."""

    would_place_on = serializers.CharField(allow_null=True)
    why_not = serializers.CharField(allow_blank=True)
    hosts = HostVerdictSerializer(many=True)


class FleetOverviewSerializer(serializers.Serializer):
    """``/api/fleet/overview/``: ``totals`` (gpus_by_mode, vgpu_instances_free, empty_boards, whole_boards_free,
    free_gpus, stranded_gpus, stranded_share, stranded: [{host, gpu_id, model, gpus, reason, why}],
    offered_templates) and ``problems`` ([{kind, subject, detail, link, at}])."""

    totals = serializers.DictField()
    problems = serializers.ListField(child=serializers.DictField())
