"""The request service on the placement engine: policy per deployment, catalog ladders and series,
share templates (the scheduler picks board and profile), no-GPU templates, flexible GPUs, and the
process's fleet cache staying true to the database."""

import io

import pytest

from allocations.choices import DesktopStatus
from allocations.exceptions import NoCapacity, QuotaExceeded
from allocations.models import ProfileQuota
from allocations.placement import fleet as placement
from allocations.services.availability import offers_for
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from inventory.choices import GPUMode
from inventory.models import GPU, Host, VGPUProfile
from inventory.services.connect import driver_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def real_catalog(catalog, settings):
    """The shared catalog (every series and size), over the small test one."""
    from inventory.services.catalog import load_catalog

    load_catalog(settings.PROFILE_CATALOG)


@pytest.fixture
def roomy(tenant):
    tenant.quota.max_desktops = 50
    tenant.quota.max_framebuffer_mib = 10**7
    tenant.quota.save()
    return tenant


def ask(user, template, **kw):
    return request_desktop(actor=user, template_id=template.pk, duration_hours=2, **kw)


def profile(name):
    return VGPUProfile.objects.get(name=name)


def fill(gpu, profile_name, used):
    GPU.objects.filter(pk=gpu.pk).update(current_profile=profile(profile_name), instances_used=used)


@pytest.mark.parametrize(
    "policy, expected",
    [("first-fit", "a-host"), ("best-fit", "b-host"), ("ours", "b-host")],
)
def test_the_deployments_policy_decides(settings, lab, tenant_member, roomy, policy, expected):
    """a-host sorts first and is empty; b-host's A40 already runs A40-8Q with one instance left.
    First fit takes the first host that fits; the packing policies fill the started board."""
    lab("a-host=A40x2")
    b = lab("b-host=A40x1")
    fill(b.gpus.get(), "A40-8Q", 5)
    settings.PORTAL_PLACEMENT_POLICY = policy
    template = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    desktop = ask(tenant_member, template)
    assert desktop.host.name == expected
    assert placement.fleet().policy_name == policy


def test_an_unknown_policy_stops_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from core.env import env_choice

    monkeypatch.setenv("PORTAL_PLACEMENT_POLICY", "tetris")
    with pytest.raises(ImproperlyConfigured, match="PORTAL_PLACEMENT_POLICY='tetris' is not one of"):
        env_choice("PORTAL_PLACEMENT_POLICY", "ours", ("ours", "fgd"))


def test_share_template_gets_the_smallest_profile_of_its_series_on_an_allowed_board(lab, tenant_member, roomy):
    lab("a16=A16x1")
    lab("a40=A40x1")
    quarter_q = make_template("Quarter", gpu_share_milli=250, gpu_models=["A40"], tenants=[roomy])
    desktop = ask(tenant_member, quarter_q)
    assert desktop.profile.name == "A40-12Q"  # 12 GiB = a quarter of 48 GiB
    assert desktop.host.name == "a40" and desktop.framebuffer_mib == 12288
    assert desktop.gpus.get().current_profile.name == "A40-12Q" and desktop.mdev_uuid
    tiny_b = make_template("Tiny B", gpu_share_milli=100, profile_series="B", gpu_models=["A16"], tenants=[roomy])
    assert ask(tenant_member, tiny_b).profile.name == "A16-2B"  # 1.6 GiB of 16 → 2B
    # No B-series profile of an A16 holds half a board: the request says so instead of taking a Q.
    half_b = make_template("Half B", gpu_share_milli=500, profile_series="B", gpu_models=["A16"], tenants=[roomy])
    with pytest.raises(NoCapacity, match="No online host has an A16 GPU in vGPU mode") as exc:
        ask(tenant_member, half_b)
    assert exc.value.details == {"resource": "gpu_model"}


def test_series_are_different_types_in_equal_size_mode(lab, tenant_member, roomy):
    host = lab("a16=A16x1")
    fill(host.gpus.get(), "A16-2B", 1)
    two_q = make_template("2Q", profile=profile("A16-2Q"), tenants=[roomy])
    with pytest.raises(NoCapacity, match="No free A16-2Q instance") as exc:
        ask(tenant_member, two_q)
    assert exc.value.details == {"resource": "gpu_instances"}
    two_b = make_template("2B", profile=profile("A16-2B"), tenants=[roomy])
    assert ask(tenant_member, two_b).gpus.get().instances_used == 2


def test_share_quota_is_checked_against_the_profile_the_scheduler_chose(lab, tenant_member, roomy):
    lab("a40=A40x1")
    ProfileQuota.objects.create(quota=roomy.quota, profile=profile("A40-12Q"), max_instances=1)
    quarter = make_template("Quarter", gpu_share_milli=250, tenants=[roomy])
    ask(tenant_member, quarter)
    with pytest.raises(QuotaExceeded, match="A40-12Q") as exc:
        ask(tenant_member, quarter)
    assert exc.value.details["resource"] == "profile:A40-12Q"
    (offer,) = offers_for(roomy)
    assert not offer.available and offer.kind == "quota" and "A40-12Q" in offer.reason
    roomy.quota.max_framebuffer_mib = 12288 + 100
    roomy.quota.save()
    ProfileQuota.objects.all().delete()
    with pytest.raises(QuotaExceeded) as exc:
        ask(tenant_member, quarter)
    assert exc.value.details["resource"] == "framebuffer_mib"
    assert GPU.objects.get().instances_used == 1  # nothing claimed by the refused requests


def test_a_desktop_without_a_gpu_runs_on_any_host(lab, tenant_member, roomy, run_tasks):
    host = lab("a40=A40x1")
    office = make_template("Office", gpu_count=0, tenants=[roomy], vcpus=2, memory_mib=2048)
    with run_tasks():
        desktop = ask(tenant_member, office)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RUNNING and desktop.host == host
    assert desktop.gpus.count() == 0 and desktop.framebuffer_mib == 0 and desktop.mdev_uuid is None
    info = driver_for(host).domain_info(desktop.domain_name)
    assert info.mdev_uuids == () and info.state == "running"
    assert GPU.objects.get().instances_used == 0
    host.refresh_from_db()
    assert host.vcpus_used == 2 and host.memory_used_mib == 2048


def test_flexible_gpus_serve_vgpus_or_whole_desktops(lab, tenant_member, roomy):
    host = lab("flex=A40x2")
    GPU.objects.filter(host=host).update(mode=GPUMode.FLEXIBLE)
    whole = make_template("Whole", gpu_count=1, gpu_models=["A40"], tenants=[roomy])
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    vgpu = ask(tenant_member, cad)
    taken = ask(tenant_member, whole)
    assert set(vgpu.gpus.all()) | set(taken.gpus.all()) == set(host.gpus.all())
    assert taken.profile is None and taken.framebuffer_mib == 49152
    whole_gpu = taken.gpus.get()
    assert whole_gpu.instances_used == 1 and whole_gpu.current_profile is None
    # the whole GPU takes no vGPU; the other keeps filling with its profile, never a second type
    for _ in range(5):
        assert ask(tenant_member, cad).gpus.get() == vgpu.gpus.get()
    with pytest.raises(NoCapacity, match="No free A40-8Q instance"):
        ask(tenant_member, cad)
    with pytest.raises(NoCapacity, match="free whole GPU"):
        ask(tenant_member, whole)


def test_vgpu_only_and_passthrough_only_gpus_keep_to_their_mode(lab, tenant_member, roomy):
    lab("vg=A40x1")
    whole = make_template("Whole", gpu_count=1, gpu_models=["A40"], tenants=[roomy])
    with pytest.raises(NoCapacity, match="No online host has 1 free whole GPU"):
        ask(tenant_member, whole)
    pt = lab("pt=L40Sx1:passthrough")
    l40s = make_template("L40S share", gpu_share_milli=100, gpu_models=["L40S"], tenants=[roomy])
    with pytest.raises(NoCapacity, match="No online host has an L40S GPU in vGPU mode"):
        ask(tenant_member, l40s)
    any_whole = make_template("Any whole", gpu_count=1, tenants=[roomy])
    assert ask(tenant_member, any_whole).host == pt


def test_a_host_with_two_board_models_serves_both(lab, tenant_member, roomy):
    host = lab("mixed=A40x1")
    GPU.objects.create(host=host, pci_address="0000:99:00.0", model="L40S", framebuffer_mib=49152)
    l40s = make_template("L40S quarter", gpu_share_milli=250, gpu_models=["L40S"], tenants=[roomy])
    a40 = make_template("A40 quarter", gpu_share_milli=250, gpu_models=["A40"], tenants=[roomy])
    assert ask(tenant_member, l40s).gpus.get().model == "L40S"
    assert ask(tenant_member, a40).gpus.get().model == "A40"
    host.refresh_from_db()
    assert host.vcpus_used == 8  # both claims counted on the one host


def test_the_fleet_follows_the_database(lab, tenant_member, roomy, platform_admin):
    """The per-process cache re-reads what changed before each decision: claims, a drained host, a disabled GPU."""
    from inventory.services.hosts import set_host_state, update_gpu

    a = lab("a=A40x1")
    b = lab("b=A40x1")
    cad = make_template("Big", profile=profile("A40-24Q"), tenants=[roomy])
    first, second = ask(tenant_member, cad), ask(tenant_member, cad)
    assert first.gpus.get() == second.gpus.get()  # the started board fills first
    other = b if first.host == a else a
    assert ask(tenant_member, cad).host == other  # the claims were seen: the first board is full
    rebuilds = placement.fleet().rebuilds
    set_host_state(other, "maintenance", actor=platform_admin)
    with pytest.raises(NoCapacity):
        ask(tenant_member, cad)
    assert placement.fleet().rebuilds == rebuilds + 1  # the host left the fleet
    set_host_state(other, "online", actor=platform_admin)
    assert ask(tenant_member, cad).host == other
    spare = lab("c=A40x1")
    update_gpu(spare.gpus.get(), {"mode": GPUMode.DISABLED}, actor=platform_admin)
    with pytest.raises(NoCapacity, match="No free A40-24Q instance"):
        ask(tenant_member, cad)
    update_gpu(spare.gpus.get(), {"mode": GPUMode.VGPU}, actor=platform_admin)
    assert ask(tenant_member, cad).host == spare


def test_writes_behind_the_portals_back_are_seen_at_the_next_full_read(lab, tenant_member, roomy, monkeypatch):
    host = lab("a=A40x1")
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    ask(tenant_member, cad)
    Host.objects.filter(pk=host.pk).update(state="maintenance")  # SQL by hand: no version moved
    monkeypatch.setattr(placement, "FULL_REFRESH_S", 0)
    with pytest.raises(NoCapacity):
        ask(tenant_member, cad)


def test_demand_is_learned_from_templates_and_recent_desktops(lab, tenant_member, roomy):
    lab("a=A40x1")
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    make_template("Office", gpu_count=0, tenants=[roomy])
    ask(tenant_member, cad)
    ask(tenant_member, cad)
    demand = placement.learned_demand(1000)
    shapes = [(r.num_gpu, r.framebuffer) for r in demand]
    assert shapes.count((1, 8192)) == 3 and shapes.count((0, 0)) == 1


def test_quota_counters_follow_requests_and_releases(lab, tenant_member, roomy, run_tasks):
    from allocations.models import Quota
    from allocations.services.lifecycle import release_desktop
    from allocations.services.quotas import counted_usage, usage_of

    lab("a40=A40x1")
    stale = Quota.objects.get(tenant=roomy)
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    quarter = make_template("Quarter", gpu_share_milli=250, gpu_models=["A40"], tenants=[roomy])
    with run_tasks():
        kept = ask(tenant_member, cad)
        gone = ask(tenant_member, cad)
        release_desktop(gone, actor=tenant_member)
    with pytest.raises(NoCapacity):  # the A40 runs 8Q: a 12Q share does not fit, and nothing is counted
        ask(tenant_member, quarter)
    roomy.quota.refresh_from_db()
    assert (roomy.quota.desktops_held, roomy.quota.framebuffer_held_mib) == counted_usage(roomy) == (1, 8192)
    stale.max_desktops = 7  # saving a copy read before the requests keeps the counters
    stale.save()
    roomy.quota.refresh_from_db()
    assert roomy.quota.desktops_held == 1 and usage_of(roomy).desktops == 1
    kept.refresh_from_db()
    assert kept.status == DesktopStatus.RUNNING


def test_after_a_lost_claim_the_request_goes_elsewhere(lab, tenant_member, roomy):
    """The retry leaves out the host where another request won, unless nothing else fits."""
    a = lab("a=A40x1")
    b = lab("b=A40x1")
    fill(b.gpus.get(), "A40-8Q", 4)  # the packing policy prefers b (started board)
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    fleet = placement.fleet()
    shape = placement.shape_of(cad)
    assert fleet.place(shape).host_id == b.pk
    assert fleet.place(shape, fresh=True, avoid=frozenset({b.pk})).host_id == a.pk
    assert fleet.place(shape, avoid=frozenset({a.pk, b.pk})).host_id == b.pk  # nowhere else: try it again
    assert fleet.place(shape).host_id == b.pk  # the avoidance was for that decision only


def test_a_lost_claim_is_retried_on_fresh_rows(lab, tenant_member, roomy, monkeypatch):
    """Another request takes the last instance between this request's read and its claim."""
    from inventory.services import capacity

    a = lab("a=A40x1")
    b = lab("b=A40x1")
    fill(b.gpus.get(), "A40-8Q", 5)
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    real_claim = capacity.claim_vgpu
    calls = []

    def claim_after_a_rival(gpu_id, prof, host_id=None):
        if not calls:  # a rival commits the last instance on b first
            GPU.objects.filter(pk=gpu_id).update(instances_used=6)
        calls.append(gpu_id)
        return real_claim(gpu_id, prof, host_id)

    monkeypatch.setattr(capacity, "claim_vgpu", claim_after_a_rival)
    desktop = ask(tenant_member, cad)
    assert calls == [b.gpus.get().pk, a.gpus.get().pk] and desktop.host == a
    a.refresh_from_db()
    b.refresh_from_db()
    assert (b.vcpus_used, b.memory_used_mib) == (0, 0)  # the lost claim gave b's share back
    assert (a.vcpus_used, a.memory_used_mib) == (cad.vcpus, cad.memory_mib)


def test_a_claim_checks_the_instance_limit_the_catalog_has_now(lab, tenant_member, roomy):
    """The fleet caches the catalog (and a share template gets its profile from there); an instance
    limit lowered since is still the claim's limit."""
    a = lab("a=A40x1")
    fill(a.gpus.get(), "A40-12Q", 2)
    share = make_template("Quarter", gpu_share_milli=250, gpu_models=["A40"], tenants=[roomy])
    assert placement.fleet().place(placement.shape_of(share)).profile_id == profile("A40-12Q").pk  # 4 per board
    VGPUProfile.objects.filter(name="A40-12Q").update(max_per_gpu=2)
    with pytest.raises(NoCapacity):
        ask(tenant_member, share)
    assert GPU.objects.get(host=a).instances_used == 2


def test_a_lost_claim_on_several_whole_gpus_takes_none_of_them(lab, tenant_member, roomy, monkeypatch):
    """A rival takes one of the two GPUs this request chose: the other one is not kept either."""
    from allocations.services import request as service

    a = lab("a=L40Sx2:passthrough")
    b = lab("b=L40Sx2:passthrough")
    pair = make_template("Pair", gpu_count=2, tenants=[roomy])

    real_decide = service.decide
    tried = []

    def decide_then_a_rival(*args, **kwargs):
        grant = real_decide(*args, **kwargs)
        if not tried:  # the rival takes one of the chosen GPUs between this decision and its claim
            GPU.objects.filter(pk=max(grant.choice.gpu_ids)).update(instances_used=1)
        tried.append(grant.choice.host_id)
        return grant

    monkeypatch.setattr(service, "decide", decide_then_a_rival)
    desktop = ask(tenant_member, pair)
    first = Host.objects.get(pk=tried[0])
    assert len(tried) == 2 and desktop.host_id == tried[1] != first.pk
    assert sorted(first.gpus.values_list("instances_used", flat=True)) == [0, 1]  # only the rival's GPU is taken
    assert (first.vcpus_used, first.memory_used_mib) == (0, 0)
    assert {a.pk, b.pk} == {first.pk, desktop.host_id}
    assert sorted(desktop.gpus.values_list("instances_used", flat=True)) == [1, 1]


def test_a_named_profile_is_given_exactly_even_beside_one_of_the_same_size(lab, tenant_member, roomy):
    from inventory.models import VGPUProfile as Profile

    lab("a40=A40x1")
    twin = Profile.objects.create(
        name="A40-8Q-twin", board="A40", board_framebuffer_mib=49152, series="Q", framebuffer_mib=8192, max_per_gpu=6
    )
    placement.fleet().place(placement.shape_of(make_template("warm", profile=profile("A40-4Q"), tenants=[roomy])))
    twin_template = make_template("Twin", profile=twin, tenants=[roomy])  # added after the fleet read the catalog
    desktop = ask(tenant_member, twin_template)
    assert desktop.profile == twin and desktop.gpus.get().current_profile == twin
    with pytest.raises(NoCapacity, match="No free A40-8Q instance"):  # the board runs the twin now
        ask(tenant_member, make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy]))


def test_a_gpu_running_a_profile_added_after_the_catalog_was_read(lab, tenant_member, roomy):
    from inventory.models import VGPUProfile as Profile

    lab("a=A40x1")
    lab("b=A40x1")
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    first = ask(tenant_member, cad)  # the fleet has read the catalog
    newer = Profile.objects.create(
        name="A40-8Q-new", board="A40", board_framebuffer_mib=49152, series="Q", framebuffer_mib=8192, max_per_gpu=6
    )
    other = GPU.objects.exclude(instances_used__gt=0).get()
    other.current_profile, other.instances_used = newer, 1  # e.g. found running by the host's sync
    other.save()
    assert ask(tenant_member, cad).gpus.get() == first.gpus.get()  # the only board running A40-8Q


def test_drifted_quota_counters_are_recounted_and_never_block_a_release(lab, tenant_member, roomy, run_tasks):
    from django.core.management import call_command

    from allocations.models import Quota
    from allocations.services.lifecycle import release_desktop
    from audit.models import AuditEvent

    lab("a=A40x1")
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    with run_tasks():
        desktop = ask(tenant_member, cad)
        Quota.objects.filter(tenant=roomy).update(desktops_held=0, framebuffer_held_mib=0)  # drifted
        release_desktop(desktop, actor=tenant_member)
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.RELEASED  # released despite the counters being at 0
    Quota.objects.filter(tenant=roomy).update(desktops_held=5, framebuffer_held_mib=99)
    out = io.StringIO()
    call_command("recount_quotas", stdout=out)
    assert "recounted 1 tenant(s): acme" in out.getvalue()
    quota = Quota.objects.get(tenant=roomy)
    assert (quota.desktops_held, quota.framebuffer_held_mib) == (0, 0)
    event = AuditEvent.objects.get(verb="quota.recounted")
    assert event.before == {"desktops_held": 5, "framebuffer_held_mib": 99}
    call_command("recount_quotas", stdout=out)
    assert out.getvalue().endswith("recounted 0 tenant(s)\n")


def cannot_pass_through(host):
    """As a sync that found no VFIO passthrough on the host would leave it (saved: the fleet re-reads it)."""
    host.passthrough_capable, host.passthrough_note = False, "no VFIO backend: the IOMMU is off"
    host.save()
    return host


def test_a_passthrough_template_is_not_offered_where_no_host_can_pass_gpus_through(api, lab, tenant_member, roomy):
    cannot_pass_through(lab("pt=L40Sx2:passthrough"))
    whole = make_template("Whole L40S", gpu_count=1, gpu_models=["L40S"], tenants=[roomy])
    offer = next(o for o in offers_for(roomy) if o.template == whole)
    assert not offer.available and offer.kind == "capacity"
    assert offer.reason == "No host here can hand a whole GPU to a desktop (no IOMMU/VFIO passthrough)."
    refused = api.as_user(tenant_member).post(
        "/api/desktops/", {"template": whole.pk, "duration_hours": 1}, format="json"
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == offer.reason
    assert GPU.objects.filter(instances_used__gt=0).count() == 0
    other = lab("ok=L40Sx1:passthrough")  # a host that can: offered again, and placed there
    assert next(o for o in offers_for(roomy) if o.template == whole).available
    assert ask(tenant_member, whole).host == other


def test_a_flexible_gpu_on_a_host_that_cannot_pass_through_still_takes_vgpus(lab, tenant_member, roomy):
    host = lab("flex=A40x1")
    GPU.objects.filter(host=host).update(mode=GPUMode.FLEXIBLE)
    cannot_pass_through(host)
    whole = make_template("Whole", gpu_count=1, gpu_models=["A40"], tenants=[roomy])
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    with pytest.raises(NoCapacity, match=r"No host here can hand a whole GPU to a desktop \(no IOMMU/VFIO"):
        ask(tenant_member, whole)
    desktop = ask(tenant_member, cad)
    assert desktop.host == host and desktop.profile.name == "A40-8Q"


def test_the_claim_refuses_a_whole_gpu_of_a_host_that_cannot_pass_through_whatever_the_cache(
    lab, tenant_member, roomy, monkeypatch
):
    from inventory.services import capacity

    host = lab("pt=L40Sx1:passthrough")
    whole = make_template("Whole", gpu_count=1, gpu_models=["L40S"], tenants=[roomy])
    monkeypatch.setattr(placement, "FULL_REFRESH_S", 3600)  # only a full read would see a write by hand
    assert placement.place(whole).host_id == host.pk  # the fleet's cache is warm
    Host.objects.filter(pk=host.pk).update(passthrough_capable=False)  # SQL by hand: no version moved
    stale = placement.place(whole)
    assert stale.host_id == host.pk  # the cache still offers the GPU...
    assert capacity.claim_whole_gpus(list(stale.gpu_ids), host.pk) is False  # ...the claim does not take it
    with pytest.raises(NoCapacity, match="No host here can hand a whole GPU"):
        ask(tenant_member, whole)  # lost claims, then a full read: refused in words
    assert GPU.objects.get(host=host).instances_used == 0
    host.refresh_from_db()
    assert (host.vcpus_used, host.memory_used_mib) == (0, 0)


def test_a_whole_gpu_held_when_its_host_lost_passthrough_takes_no_vgpu(lab, tenant_member, roomy):
    host = lab("flex=A40x1")
    GPU.objects.filter(host=host).update(mode=GPUMode.FLEXIBLE)
    whole = make_template("Whole", gpu_count=1, gpu_models=["A40"], tenants=[roomy])
    cad = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy])
    assert ask(tenant_member, whole).host == host
    cannot_pass_through(host)  # the flexible GPU now reads vGPU-only, but it is still held whole
    with pytest.raises(NoCapacity, match="No free A40-8Q instance"):
        ask(tenant_member, cad)
