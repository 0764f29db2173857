"""The inventory page: the fleet's totals (free vGPU instances per profile, boards free, stranded capacity
as the placement engine defines it), what it is made of (hosts by state, boards by model and how busy),
its problems with links, the cards higher layers register (``services.overview_panels``), and one page
of hosts with their GPUs as tiles (search, filter by model, state or tenant). Served from allocations
because stranded capacity is a placement question and inventory sits below allocations. Its cost does
not grow with the fleet but for the totals' one pass over the boards (the placement engine's snapshot)."""

from __future__ import annotations

from collections import Counter

from django.shortcuts import render

from allocations.services.fleet import (
    PROBLEM_LABELS,
    PROBLEMS_SHOWN,
    STRANDED_SHOWN,
    filter_choices,
    fleet_problems,
    fleet_summary,
    fleet_totals,
    host_page,
)
from allocations.services.overview_panels import panels_for
from tenancy.permissions import role_required
from tenancy.roles import OPERATORS


@role_required(OPERATORS)
def overview(request):
    page, filters = host_page(request.GET)
    problems = fleet_problems()
    for problem in problems[:PROBLEMS_SHOWN]:
        problem["label"] = PROBLEM_LABELS[problem["kind"]]
    totals = fleet_totals()
    stranded_by = Counter()
    for row in totals["stranded"]:
        stranded_by[(row["model"], row["why"])] += row["gpus"]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "hosts": page.object_list,
        "filters": filters,
        "choices": filter_choices(),
        "query": query.urlencode(),
        "summary": fleet_summary(),
        "totals": totals,
        "stranded_shown": totals["stranded"][:STRANDED_SHOWN],
        "stranded_by": [{"model": m, "why": why, "gpus": round(n, 3)} for (m, why), n in sorted(stranded_by.items())],
        "problems": problems[:PROBLEMS_SHOWN],
        "problems_more": max(0, len(problems) - PROBLEMS_SHOWN),
        "panels": panels_for(request),  # cards higher layers add (bookings: the capacity held for them)
    }
    return render(request, "inventory/overview.html", context)
