from django.contrib.auth import get_user_model
from rest_framework import serializers

from allocations.models import DesktopTemplate, Membership, ProfileQuota, Quota, Tenant
from allocations.services.access import sees_everything
from inventory.models import VGPUProfile


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


class QuotaFieldsSerializer(serializers.ModelSerializer):
    """The quota given when creating a tenant (all optional)."""

    class Meta:
        model = Quota
        fields = ["max_desktops", "max_framebuffer_mib", "max_desktop_hours"]


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


class MembershipSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", queryset=get_user_model().objects.all())
    tenant_name = serializers.CharField(source="tenant.name", read_only=True, default=None)

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
    is_passthrough = serializers.BooleanField(read_only=True)
    framebuffer_mib = serializers.SerializerMethodField()

    class Meta:
        model = DesktopTemplate
        fields = [
            "id",
            "name",
            "description",
            "profile",
            "is_passthrough",
            "passthrough_model",
            "gpu_count",
            "framebuffer_mib",
            "vcpus",
            "memory_mib",
            "disk_image",
            "allowed_tenants",
            "is_active",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def get_framebuffer_mib(self, obj) -> int | None:
        """vGPU framebuffer of one desktop; null for passthrough (whole boards)."""
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
