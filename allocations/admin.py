from django.contrib import admin

from allocations.models import DesktopTemplate, Membership, ProfileQuota, Quota, Tenant


class QuotaInline(admin.StackedInline):
    model = Quota
    can_delete = False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [QuotaInline, MembershipInline]


class ProfileQuotaInline(admin.TabularInline):
    model = ProfileQuota
    extra = 0
    autocomplete_fields = ("profile",)


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ("tenant", "max_desktops", "max_framebuffer_mib", "max_desktop_hours")
    inlines = [ProfileQuotaInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "role", "tenant")
    list_filter = ("role", "tenant")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)


@admin.register(DesktopTemplate)
class DesktopTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "profile", "gpu_count", "vcpus", "memory_mib", "is_active")
    list_filter = ("is_active", "profile__board")
    search_fields = ("name",)
    filter_horizontal = ("allowed_tenants",)
    autocomplete_fields = ("profile",)
