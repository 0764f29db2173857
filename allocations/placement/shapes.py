"""The portal's rows in the engine's terms: a desktop template as the engine's ``Request``
(``shape_of``: vCPUs, RAM, and a named profile, a share of a board with allowed models and series,
whole GPUs, or no GPU), the catalog's profiles as ladders (``catalog_ladders``), and the demand FGD
and ours score against (``learned_demand``)."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from allocations.placement import engine
from allocations.placement.engine import MILLI, Ladder, ProfileSpec

DEMAND_WINDOW_DAYS = 30


def _series_key(profile) -> str:
    return f"{profile.series}:mig" if profile.mig_backed else profile.series


def shape_of(template, vcpu_milli: int | None = None) -> engine.Request:
    """The engine's request for one desktop of ``template``."""
    unit = vcpu_milli or settings.PORTAL_PLACEMENT_VCPU_MILLI
    cpu, mem = template.vcpus * unit, template.memory_mib
    models = frozenset(template.gpu_models) if template.gpu_models else None
    if template.profile_id:
        p = template.profile
        milli = max(1, min(MILLI, p.framebuffer_mib * MILLI // p.board_framebuffer_mib))
        return engine.Request(cpu, mem, 1, milli, frozenset({p.board}), _series_key(p), p.framebuffer_mib, p.pk)
    if template.gpu_share_milli:
        return engine.Request(cpu, mem, 1, template.gpu_share_milli, models, template.profile_series)
    if template.gpu_count:
        return engine.Request(cpu, mem, template.gpu_count, MILLI, models)
    return engine.Request(cpu, mem)


def catalog_ladders(rows) -> dict[str, Ladder]:
    """Every board's profiles from catalog rows (VGPUProfile), keyed by profile id."""
    by_board: dict[str, list] = {}
    fb: dict[str, int] = {}
    for p in rows:
        by_board.setdefault(p.board, []).append(
            ProfileSpec(p.pk, p.name, p.framebuffer_mib, p.max_per_gpu, _series_key(p))
        )
        fb[p.board] = max(fb.get(p.board, 0), p.board_framebuffer_mib)
    return {board: Ladder(board, fb[board], specs) for board, specs in by_board.items()}


def learned_demand(vcpu_milli: int) -> list[engine.Request]:
    """What people ask for: one request per active template, plus one per desktop requested from it in the
    last 30 days. FGD and ours score fragmentation against this distribution."""
    from allocations.models import DesktopTemplate

    since = timezone.now() - timezone.timedelta(days=DEMAND_WINDOW_DAYS)
    templates = DesktopTemplate.objects.filter(is_active=True).select_related("profile")
    counts = dict(
        DesktopTemplate.objects.filter(desktops__requested_at__gte=since)
        .values_list("pk")
        .annotate(n=Count("desktops"))
        .order_by()
    )
    demand = []
    for t in templates:
        demand.extend([shape_of(t, vcpu_milli)] * (1 + counts.get(t.pk, 0)))
    return demand
