"""What a person could get right now, and why not: the same checks as a request, without claiming."""

from __future__ import annotations

from dataclasses import dataclass

from allocations import placement
from allocations.exceptions import QuotaExceeded
from allocations.models import DesktopTemplate, Tenant
from allocations.services.quotas import check_room, usage_of
from allocations.services.request import _candidates, _request_shape, passthrough_framebuffer


@dataclass(frozen=True)
class Offer:
    template: DesktopTemplate
    available: bool
    reason: str = ""
    kind: str = ""  # quota | capacity


def offers_for(tenant: Tenant) -> list[Offer]:
    quota = tenant.quota
    usage = usage_of(tenant)
    offers = []
    for template in tenant.templates.filter(is_active=True).select_related("profile").order_by("name"):
        try:
            fb = template.profile.framebuffer_mib if template.profile_id else 0
            check_room(
                quota, usage, framebuffer_mib=fb, profile_name=template.profile.name if template.profile_id else None
            )
        except QuotaExceeded as exc:
            offers.append(Offer(template, False, exc.message, "quota"))
            continue
        try:
            decision = placement.place(_request_shape(template), _candidates(template))
        except placement.NoPlacement as exc:
            offers.append(Offer(template, False, exc.message, "capacity"))
            continue
        if not template.profile_id:  # whole GPUs charge their boards' framebuffer, known once placed
            try:
                check_room(quota, usage, framebuffer_mib=passthrough_framebuffer(decision), profile_name=None)
            except QuotaExceeded as exc:
                offers.append(Offer(template, False, exc.message, "quota"))
                continue
        offers.append(Offer(template, True))
    return offers
