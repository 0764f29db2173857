"""The fleet overview (inventory page and /api/fleet/overview/): totals, stranded capacity as the placement
engine defines it (on a fleet built so the answer is known), problems with links, and who may see it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.placement.capacity import capacity_now
from allocations.placement.engine import stranded as strand
from allocations.tests.factories import make_template
from inventory.choices import GPUMode, HostState
from inventory.models import VGPUProfile
from inventory.tests.factories import make_gpu, make_host

pytestmark = pytest.mark.django_db


def profile(name):
    return VGPUProfile.objects.get(name=name)


@pytest.fixture
def fleet(catalog, tenant, other_tenant):
    """Online, with the offered templates CAD (A40-8Q, 4 vCPUs, 8 GiB) and Train (1 whole L40S):

    alpha  A40 running A40-8Q 2/6   → 4 × 8/48 = 0.666 free, CAD takes it: usable
           A40 running A40-24Q 1/2  → 0.5 free, no offered template takes 24Q: stranded (profile)
           A40 passthrough, empty   → 1 free, Train wants an L40S: stranded (whole only)
    beta   A40 vGPU, empty, but 2 of 4 cores used → CAD fits the GPU, not the CPU: stranded (cpu_memory)
    delta  A16 vGPU, empty          → no offered template runs on an A16: stranded (no_request)
    gamma  in maintenance, A40 empty → not counted (not online)
    Free 4.166 GPUs' worth, stranded 3.5. Templates that are not offered (paused, retired, offered to
    nobody) would take the 24Q board, and must not count."""
    alpha = make_host("alpha", passthrough_capable=True)
    make_gpu(alpha, "0000:01:00.0", current_profile=profile("A40-8Q"), instances_used=2)
    make_gpu(alpha, "0000:02:00.0", current_profile=profile("A40-24Q"), instances_used=1)
    make_gpu(alpha, "0000:03:00.0", mode=GPUMode.PASSTHROUGH)
    beta = make_host("beta", cpu_cores=4, vcpus_used=2)
    make_gpu(beta, "0000:01:00.0")
    delta = make_host("delta")
    make_gpu(delta, "0000:01:00.0", model="A16", framebuffer_mib=16384)
    gamma = make_host("gamma", state=HostState.MAINTENANCE)
    make_gpu(gamma, "0000:01:00.0")
    make_template("CAD", profile=profile("A40-8Q"), tenants=[tenant], vcpus=4, memory_mib=8192)
    make_template("Train", gpu_count=1, gpu_models=["L40S"], tenants=[other_tenant])
    make_template("Paused 24Q", profile=profile("A40-24Q"), tenants=[tenant], is_active=False)
    make_template(
        "Retired 24Q", profile=profile("A40-24Q"), tenants=[tenant], is_active=False, retired_at=timezone.now()
    )
    make_template("Nobody's 24Q", profile=profile("A40-24Q"), tenants=[])
    return {"alpha": alpha, "beta": beta, "delta": delta, "gamma": gamma}


def test_stranded_capacity_is_what_no_offered_template_can_use_now(fleet):
    totals = capacity_now()
    assert totals["offered_templates"] == ["CAD", "Train"]
    assert totals["free_gpus"] == pytest.approx(4.166)
    assert totals["stranded_gpus"] == pytest.approx(3.5)
    by_place = {(row["host"], row["model"], row["reason"]): row["gpus"] for row in totals["stranded"]}
    assert by_place == {
        ("alpha", "A40", strand.PROFILE): 0.5,
        ("alpha", "A40", strand.WHOLE_ONLY): 1.0,
        ("beta", "A40", strand.CPU_MEMORY): 1.0,
        ("delta", "A16", strand.NO_REQUEST): 1.0,
    }
    why = {row["reason"]: row["why"] for row in totals["stranded"]}
    assert why[strand.PROFILE] == "It runs A40-24Q, which no offered template takes."


def test_offering_a_template_that_uses_the_capacity_unstrands_it(fleet, tenant):
    make_template("Big", profile=profile("A40-24Q"), tenants=[tenant], vcpus=4, memory_mib=4096)
    make_template("Small A16", gpu_share_milli=125, profile_series="B", tenants=[tenant], vcpus=2, memory_mib=2048)
    totals = capacity_now()
    reasons = sorted(row["reason"] for row in totals["stranded"])
    assert reasons == [strand.CPU_MEMORY, strand.WHOLE_ONLY]  # 24Q and the A16 are usable now
    assert totals["stranded_gpus"] == pytest.approx(2.0)


def test_totals_count_free_instances_per_profile_and_free_boards(fleet):
    totals = capacity_now()
    assert totals["vgpu_instances_free"] == [
        {"profile": "A40-24Q", "free": 1, "gpus": 1},
        {"profile": "A40-8Q", "free": 4, "gpus": 1},
    ]
    assert totals["empty_boards"] == {"A16": 1, "A40": 2}  # alpha's passthrough board, beta's; not gamma's
    assert totals["whole_boards_free"] == {"A40": 1}
    assert totals["empty_boards_total"] == 3 and totals["whole_boards_free_total"] == 1


def _problem_world(fleet, tenant, tenant_member):
    make_host("omega", state=HostState.OFFLINE)
    fleet["alpha"].reconcile_problems = [{"what": "orphan domain", "detail": "portal-x has no desktop"}]
    fleet["alpha"].save()
    fleet["delta"].telemetry_status = "NVML: driver not loaded"
    fleet["delta"].last_sync_error = "libvirt: connection refused"
    fleet["delta"].save()
    template = make_template("Failing", profile=profile("A40-8Q"), tenants=[tenant])
    common = {"tenant": tenant, "owner": tenant_member, "template": template, "vcpus": 1, "memory_mib": 1024}
    recent = Desktop.objects.create(
        name="broken",
        status=DesktopStatus.FAILED,
        status_reason="libvirt refused the domain",
        holds_capacity=False,
        framebuffer_mib=0,
        duration_hours=1,
        **common,
    )
    old = Desktop.objects.create(
        name="long ago",
        status=DesktopStatus.FAILED,
        holds_capacity=False,
        framebuffer_mib=0,
        duration_hours=1,
        **common,
    )
    Desktop.objects.filter(pk=old.pk).update(status_changed_at=timezone.now() - timedelta(days=3))
    return recent


def test_api_lists_problems_with_links(api, fleet, tenant, tenant_member, auditor):
    recent = _problem_world(fleet, tenant, tenant_member)
    body = api.as_user(auditor).get("/api/fleet/overview/").json()
    problems = {(p["kind"], p["subject"]): p for p in body["problems"]}
    assert set(problems) == {
        ("host_offline", "omega"),
        ("host_unreachable", "delta"),
        ("reconcile", "alpha"),
        ("desktop_failed", f"broken (#{recent.pk}, {tenant.name})"),
        ("telemetry", "delta"),
    }
    assert problems[("reconcile", "alpha")]["link"] == "/inventory/hosts/alpha/#reconciler"
    assert problems[("reconcile", "alpha")]["detail"] == "orphan domain: portal-x has no desktop"
    assert problems[("desktop_failed", f"broken (#{recent.pk}, {tenant.name})")]["link"] == f"/desktops/{recent.pk}/"
    assert body["totals"]["stranded_gpus"] == pytest.approx(3.5)
    assert body["totals"]["gpus_by_mode"] == {"passthrough": 1, "vgpu": 5}


def test_inventory_page_shows_totals_and_problems(client, fleet, tenant, tenant_member, platform_admin):
    _problem_world(fleet, tenant, tenant_member)
    client.force_login(platform_admin)
    page = client.get("/inventory/").content.decode()
    assert 'id="stranded"' in page and "3.5" in page
    assert "It runs A40-24Q, which no offered template takes." in page
    assert 'href="/inventory/hosts/alpha/#reconciler"' in page
    assert "Host offline" in page and "Telemetry: NVML: driver not loaded" in page
    assert 'href="/inventory/hosts/gamma/"' in page  # the host tiles are still there


def test_overview_with_nothing_wrong_says_so(client, catalog, auditor):
    client.force_login(auditor)
    page = client.get("/inventory/").content.decode()
    assert "No problems" in page


@pytest.mark.parametrize(
    "persona, page_status, api_status",
    [("platform_admin", 200, 200), ("auditor", 200, 200), ("tenant_member", 403, 403), ("outsider", 403, 403)],
)
def test_only_operators_see_the_fleet(client, api, personas, catalog, persona, page_status, api_status):
    user = personas[persona]
    client.force_login(user)
    assert client.get("/inventory/").status_code == page_status
    response = api.as_user(user).get("/api/fleet/overview/")
    assert response.status_code == api_status
    if api_status == 403:
        assert response.json()["error"]["message"] == "Your role may not read this resource."


def test_anonymous_is_sent_to_log_in(client, db):
    response = client.get("/inventory/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get("/api/fleet/overview/").status_code in (401, 403)
