from django.contrib import admin

from allocations.models import Desktop, DesktopTemplate, ProfileQuota, Quota, QuotaRequest
from allocations.services import tenants
from core.admin import AuditedAdmin, ReadOnly, ReadOnlyInline
from tenancy.models import Membership, Tenant


class QuotaInline(ReadOnlyInline, admin.StackedInline):
    model = Quota


class MembershipInline(ReadOnlyInline, admin.TabularInline):
    model = Membership


@admin.register(Tenant)
class TenantAdmin(AuditedAdmin):
    list_display = ("name", "slug", "is_active", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [QuotaInline, MembershipInline]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
        else:  # with its quota (defaults), as the API does
            created = tenants.create_tenant(
                {f: getattr(obj, f) for f in ("name", "slug", "description", "is_active")}, actor=request.user
            )
            obj.pk = created.pk
            obj._state.adding = False


class ProfileQuotaInline(ReadOnlyInline, admin.TabularInline):
    """Per-profile limits are edited through PATCH /api/quotas/<id>/ (audited as a whole)."""

    model = ProfileQuota


@admin.register(Quota)
class QuotaAdmin(AuditedAdmin):
    """Each tenant's quota comes with the tenant (and counts what it holds): edited here, never added or deleted."""

    list_display = ("tenant", "max_desktops", "max_framebuffer_mib", "max_desktop_hours", "desktops_held")
    readonly_fields = ("desktops_held", "framebuffer_held_mib")
    inlines = [ProfileQuotaInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ("user", "role", "tenant")
    list_filter = ("role", "tenant")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)


@admin.register(DesktopTemplate)
class DesktopTemplateAdmin(AuditedAdmin):
    list_display = ("name", "profile", "gpu_count", "vcpus", "memory_mib", "is_active")
    list_filter = ("is_active", "profile__board")
    search_fields = ("name",)
    filter_horizontal = ("allowed_tenants",)
    autocomplete_fields = ("profile",)


@admin.register(Desktop)
class DesktopAdmin(ReadOnly, admin.ModelAdmin):
    """Read-only: desktops change state only through the lifecycle services (audited)."""

    list_display = ("name", "tenant", "owner", "profile", "status", "host", "requested_at", "expires_at")
    list_filter = ("status", "tenant", "host")
    search_fields = ("name", "owner__username", "domain_name", "mdev_uuid")
    list_select_related = ("tenant", "owner", "profile", "host")


@admin.register(QuotaRequest)
class QuotaRequestAdmin(ReadOnly, admin.ModelAdmin):
    """Read-only here: approve or reject through the API or the portal, which audit the decision."""

    list_display = ("tenant", "requested_by", "status", "max_desktops", "max_framebuffer_mib", "created_at")
    list_filter = ("status", "tenant")
