"""What a person could get right now, and why not: the same checks as a request, without claiming."""

from __future__ import annotations

from dataclasses import dataclass

from allocations.exceptions import NoCapacity, QuotaExceeded
from allocations.models import DesktopTemplate
from allocations.services.quotas import usage_of
from allocations.services.request import check_quota_first, decide
from tenancy.models import Tenant


@dataclass(frozen=True)
class Offer:
    template: DesktopTemplate
    available: bool
    reason: str = ""
    kind: str = ""  # quota | capacity


def offers_for(tenant: Tenant) -> list[Offer]:
    """One offer per template the tenant may use, evaluated by the request's own ``check_quota_first``
    and ``decide`` (placement by the deployment's policy, then the quota checks that depend on it)."""
    quota = tenant.quota
    usage = usage_of(tenant, quota)
    offers = []
    for template in tenant.templates.filter(is_active=True).select_related("profile").order_by("name"):
        try:
            check_quota_first(quota, usage, template)
            decide(template, quota, usage)
        except QuotaExceeded as exc:
            offers.append(Offer(template, False, exc.message, "quota"))
        except NoCapacity as exc:
            offers.append(Offer(template, False, exc.message, "capacity"))
        else:
            offers.append(Offer(template, True))
    return offers
