"""The capacity what-if page (platform admins): pick hosts to drain or add and the demand, run the
replay (``placement.whatif``, with the demand known ahead: ``placement.whatif_demand``) synchronously,
and show before and after side by side, in figures and in words. The API (``api/whatif.py``) takes the
same scenario as JSON."""

from __future__ import annotations

from django.shortcuts import render

from allocations.placement import whatif, whatif_demand
from core.errors import PortalError
from inventory.models import Host
from tenancy.permissions import role_required
from tenancy.roles import ADMINS


def scenario_data(post) -> dict:
    """The form's fields as the API's JSON scenario (``whatif.parse_scenario`` validates both alike)."""
    add = []
    if post.get("like"):
        add.append({"like": post["like"], "count": post.get("like_count") or 1})
    if post.get("gpu_model"):
        add.append({"gpu_model": post["gpu_model"], "gpus": post.get("gpus") or 1, "count": post.get("new_count") or 1})
    data = {
        "drain": post.getlist("drain"),
        "add": add,
        "demand": {"days": post.get("days") or 30, "scale": post.get("scale") or 1},
    }
    if post.get("policy"):
        data["policy"] = post["policy"]
    return data


@role_required(ADMINS)
def whatif_page(request):
    result, error, status = None, None, 200
    form = {"days": "30", "scale": "1", "like_count": "1", "gpus": "1", "new_count": "1", "drain": []}
    if request.method == "POST":
        form = {key: request.POST.get(key, "") for key in ("like", "like_count", "gpu_model", "gpus", "new_count")}
        form |= {"days": request.POST.get("days", ""), "scale": request.POST.get("scale", "")}
        form |= {"policy": request.POST.get("policy", ""), "drain": request.POST.getlist("drain")}
        try:
            result = whatif_demand.run_whatif(whatif.parse_scenario(scenario_data(request.POST)))
        except PortalError as exc:
            error, status = exc.message, exc.status_code
    fleet = whatif.current_fleet()
    context = {
        "fleet": [
            {"name": h.name, "gpus": _gpu_summary(h.gpus), "cores": h.cpu_cores, "memory_mib": h.memory_mib}
            for h in fleet
        ],
        "hosts": Host.objects.order_by("name").values_list("name", flat=True),
        "boards": sorted(whatif.catalog()),
        "policies": sorted(whatif.engine.POLICIES),
        "form": form,
        "result": result,
        "error": error,
        "new_host_cores": whatif.NEW_HOST_CORES,
        "new_host_memory_gib": whatif.NEW_HOST_MEMORY_GIB,
    }
    return render(request, "allocations/whatif.html", context, status=status)


def _gpu_summary(gpus) -> str:
    counts: dict[str, int] = {}
    for model, _mode in gpus:
        counts[model] = counts.get(model, 0) + 1
    return ", ".join(f"{n} × {model}" for model, n in sorted(counts.items())) or "no GPU"
