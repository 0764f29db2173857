"""The inventory page: every host with its GPUs as tiles, and above them the fleet's totals (free vGPU
instances per profile, boards free, stranded capacity as the placement engine defines it) and its
problems with links. Served from allocations because stranded capacity is a placement question and
inventory sits below allocations."""

from __future__ import annotations

from django.db.models import Prefetch
from django.shortcuts import render

from allocations.services.fleet import PROBLEM_LABELS, fleet_problems, fleet_totals
from inventory.models import GPU, Host
from tenancy.permissions import role_required
from tenancy.roles import OPERATORS


@role_required(OPERATORS)
def overview(request):
    gpus = GPU.objects.select_related("current_profile").order_by("pci_address")
    hosts = Host.objects.active().prefetch_related(Prefetch("gpus", queryset=gpus)).order_by("name")
    problems = fleet_problems()
    for problem in problems:
        problem["label"] = PROBLEM_LABELS[problem["kind"]]
    return render(request, "inventory/overview.html", {"hosts": hosts, "totals": fleet_totals(), "problems": problems})
