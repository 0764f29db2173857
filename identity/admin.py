from django.contrib import admin

from identity.models import ExternalAccount, GroupMapping, MappedMembership


@admin.register(GroupMapping)
class GroupMappingAdmin(admin.ModelAdmin):
    """Read here; changed on /identity/ (audited, and applied to the people already seen in the group)."""

    list_display = ("source", "group", "role", "tenant")
    list_filter = ("source", "role")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MappedMembership)
class MappedMembershipAdmin(admin.ModelAdmin):
    list_display = ("membership", "source", "groups", "created_at")
    list_filter = ("source",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ExternalAccount)
class ExternalAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "source", "subject", "last_synced_at")
    list_filter = ("source",)
    search_fields = ("user__username", "subject")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
