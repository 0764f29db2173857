from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import render

from allocations.models import DesktopTemplate, Tenant
from allocations.services.access import roles_of
from audit.models import AuditEvent
from inventory.models import GPU, Host


@login_required
def home(request):
    """Each role's landing page: end users their tenants, quotas and templates;
    operators a summary of the fleet and the latest audit events."""
    roles = roles_of(request.user)
    context = {"roles": roles}
    if roles.tenant_ids:
        context["tenants"] = (
            Tenant.objects.filter(pk__in=roles.tenant_ids)
            .select_related("quota")
            .prefetch_related("quota__profile_limits__profile")
        )
        context["templates"] = DesktopTemplate.objects.visible_to(request.user).select_related("profile")
    if roles.platform_admin or roles.auditor:
        context["host_states"] = dict(Host.objects.values_list("state").annotate(n=Count("id")))
        context["gpu_modes"] = dict(GPU.objects.present().values_list("mode").annotate(n=Count("id")))
        context["host_count"] = sum(context["host_states"].values())
        context["gpu_count"] = sum(context["gpu_modes"].values())
        context["tenant_count"] = Tenant.objects.count()
        context["recent_events"] = AuditEvent.objects.all()[:8]
    return render(request, "allocations/home.html", context)
