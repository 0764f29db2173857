"""What a person could get right now, and why not: the same checks as a request, without claiming.

Every offered template is asked about at once: one usage read, the quota's per-profile limits read
once, and one reading of the fleet for all the placements (``placement.offers.place_each``), so the page
costs the same number of queries whether a tenant is offered 3 templates or 150."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch

from allocations.exceptions import NoCapacity, QuotaExceeded
from allocations.models import DesktopTemplate, ProfileQuota, Quota
from allocations.placement import fleet as placement
from allocations.placement.offers import place_each
from allocations.services.quotas import usage_of
from allocations.services.request import check_quota_first, grant_for
from tenancy.models import Tenant


@dataclass(frozen=True)
class Offer:
    template: DesktopTemplate
    available: bool
    reason: str = ""
    kind: str = ""  # quota | capacity


def offers_for(tenant: Tenant) -> list[Offer]:
    """One offer per template the tenant may use, evaluated by the request's own ``check_quota_first``,
    the deployment's placement policy and ``grant_for`` (the quota checks that depend on where it lands)."""
    limits = Prefetch("profile_limits", queryset=ProfileQuota.objects.select_related("profile"))
    quota = Quota.objects.prefetch_related(limits).get(tenant=tenant)
    usage = usage_of(tenant, quota)
    templates = list(tenant.templates.filter(is_active=True).select_related("profile").order_by("name"))
    offers = []
    for template, choice in zip(templates, place_each(templates), strict=True):
        try:
            check_quota_first(quota, usage, template)
            if isinstance(choice, placement.NoPlacement):
                raise NoCapacity(choice.message, details={"resource": choice.resource})
            grant_for(template, choice, quota, usage)
        except QuotaExceeded as exc:
            offers.append(Offer(template, False, exc.message, "quota"))
        except NoCapacity as exc:
            offers.append(Offer(template, False, exc.message, "capacity"))
        else:
            offers.append(Offer(template, True))
    return offers
