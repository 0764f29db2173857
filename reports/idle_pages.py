"""The admins' page of GPU-hours held vs used and idle capacity reclaimed (``reports.idle``), and its CSV."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import render

from core.errors import PortalError
from reports.idle import RECLAIM_VERBS, held_vs_used, held_vs_used_csv, reclaimed_per_week
from reports.usage import parse_period
from tenancy.permissions import role_required
from tenancy.roles import OPERATORS


@role_required(OPERATORS)
def held_vs_used_page(request):
    """``?period=YYYY-MM`` (or ``start``/``end``); ``format=csv`` (``bom=1`` for Excel) downloads the table."""
    try:
        start, end, label = parse_period(request.GET)
    except PortalError as exc:
        messages.error(request, exc.message)
        start, end, label = parse_period({})
    lines = held_vs_used(start, end)
    if request.GET.get("format") == "csv":
        response = HttpResponse(
            held_vs_used_csv(lines, bom=request.GET.get("bom") == "1"), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="gpu-held-vs-used-{label}.csv"'
        return response
    held = sum((line.held_gpu_hours for line in lines), Decimal(0))
    used = sum((line.used_gpu_hours for line in lines), Decimal(0))
    totals = {"held": held, "used": used, "idle": held - used, "percent": round(100 * used / held) if held else 0}
    return render(
        request,
        "reports/held_vs_used.html",
        {
            "lines": lines,
            "totals": totals,
            "weeks": reclaimed_per_week(start, end),
            "verbs": RECLAIM_VERBS,
            "label": label,
            "start": start,
            "end": end,
            "query": request.GET.urlencode(),
        },
    )
