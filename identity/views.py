"""/identity/: the platform admins' page of group mappings (and the sync, run by hand)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.errors import PortalError
from identity.forms import GroupMappingForm
from identity.models import ExternalAccount, GroupMapping, MappedMembership
from identity.services import create_mapping, delete_mapping
from identity.sync import sync_all
from tenancy.models import Tenant
from tenancy.permissions import role_required
from tenancy.roles import ADMINS, Role


def _default_rows() -> list[dict]:
    """The deployment's PORTAL_IDENTITY_GROUP_MAPPING, each with whether its tenant exists."""
    rows = getattr(settings, "PORTAL_IDENTITY_GROUP_MAPPING", [])
    slugs = set(
        Tenant.objects.filter(slug__in=[r.get("tenant") for r in rows if r.get("tenant")]).values_list(
            "slug", flat=True
        )
    )
    return [
        {**row, "missing_tenant": row["role"] == Role.TENANT_MEMBER and row.get("tenant") not in slugs} for row in rows
    ]


@role_required(ADMINS)
def mappings(request):
    form = GroupMappingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            mapping = create_mapping(form.save(commit=False), actor=request.user)
        except (PortalError, ValidationError) as exc:
            messages.error(request, getattr(exc, "message", None) or " ".join(exc.messages))
        else:
            messages.success(request, f"Added: {mapping}.")
            return redirect("identity:mappings")
    context = {
        "form": form,
        "mappings": GroupMapping.objects.select_related("tenant"),
        "defaults": _default_rows(),
        "ldap_enabled": bool(getattr(settings, "AUTH_LDAP_SERVER_URI", "")),
        "oidc_enabled": bool(getattr(settings, "OIDC_RP_CLIENT_ID", "")),
        "oidc_name": getattr(settings, "PORTAL_OIDC_NAME", ""),
        "accounts": ExternalAccount.objects.count(),
        "mapped": MappedMembership.objects.count(),
    }
    return render(request, "identity/mappings.html", context)


@role_required(ADMINS)
@require_POST
def mapping_delete(request, pk):
    mapping = get_object_or_404(GroupMapping, pk=pk)
    text = str(mapping)
    delete_mapping(mapping, actor=request.user)
    messages.success(request, f"Removed: {text}. Memberships only it granted are gone.")
    return redirect("identity:mappings")


@role_required(ADMINS)
@require_POST
def sync_now(request):
    results = sync_all(trigger="sync by a platform admin")
    for source, result in results.items():
        (messages.error if result.error else messages.success)(request, f"{source.upper()}: {result}.")
    return redirect("identity:mappings")
