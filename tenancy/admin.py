"""API tokens in the admin: listed by prefix (the key itself is nowhere to be shown), revoked through
``tenancy.tokens`` (audited); made only by their owner, on /account/tokens/ or the API."""

from django.contrib import admin, messages

from core.admin import ReadOnly
from core.errors import PortalError
from tenancy import tokens
from tenancy.models import APIToken


@admin.register(APIToken)
class APITokenAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "prefix", "name")
    list_select_related = ("user",)
    fields = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            try:
                tokens.revoke_token(token, actor=request.user)
                revoked += 1
            except PortalError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
