"""Requests racing for the last capacity on PostgreSQL: exactly the free slots are granted,
the rest get a 409, quotas hold, and no GPU is over its limit or runs two profile types.

Each request runs in its own thread with its own database connection, released together
by a barrier so they really contend. SQLite serialises writers with a file lock, so these
run on PostgreSQL only (CI runs them there)."""

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from allocations.exceptions import NoCapacity, QuotaExceeded
from allocations.models import Desktop, Quota
from allocations.services.quotas import counted_usage
from allocations.services.request import request_desktop
from allocations.tests.factories import make_membership, make_template, make_tenant, make_user
from inventory.models import GPU, Host, VGPUProfile
from tenancy.roles import Role

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks"),
]
THREADS = 32


def race(calls):
    """Run every call at once; return a Counter of outcomes ('ok' or the exception class name)."""
    barrier = threading.Barrier(len(calls))
    outcomes = []
    lock = threading.Lock()

    def run(call):
        try:
            barrier.wait()
            call()
            result = "ok"
        except (NoCapacity, QuotaExceeded) as exc:
            result = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - anything else is a bug the test must show
            result = f"BUG {type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return Counter(outcomes)


def members(count: int, tenants: list):
    users = []
    for i in range(count):
        user = make_user(f"racer{i}")
        make_membership(user, Role.TENANT_MEMBER, tenants[i % len(tenants)])
        users.append(user)
    return users


def assert_inventory_consistent():
    for gpu in GPU.objects.select_related("current_profile"):
        holders = Desktop.objects.holding_capacity().filter(gpus=gpu)
        assert gpu.instances_used == holders.count(), gpu
        profiles = set(holders.values_list("profile__name", flat=True))
        assert len(profiles) <= 1, f"{gpu} runs {profiles}"
        if gpu.current_profile:
            assert gpu.instances_used <= gpu.current_profile.max_per_gpu
    for host in Host.objects.all():
        holders = Desktop.objects.holding_capacity().filter(host=host)
        assert host.vcpus_used == sum(holders.values_list("vcpus", flat=True)) <= host.cpu_cores
    for quota in Quota.objects.select_related("tenant"):
        assert (quota.desktops_held, quota.framebuffer_held_mib) == counted_usage(quota.tenant), quota


@pytest.mark.parametrize("free_slots", [1, 3])
def test_racing_for_the_last_slots_grants_exactly_those(lab, catalog, free_slots):
    lab("lab-a40=A40x1")
    tenants = [make_tenant(f"T{i}", f"t{i}", max_desktops=50, max_framebuffer_mib=10**7) for i in range(4)]
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=tenants)
    users = members(THREADS, tenants)
    for user in users[: 6 - free_slots]:  # fill the board (6 × A40-8Q) up to the last free slots
        request_desktop(actor=user, template_id=template.pk, duration_hours=1)

    outcome = race([lambda u=u: request_desktop(actor=u, template_id=template.pk, duration_hours=1) for u in users])

    assert outcome == Counter({"ok": free_slots, "NoCapacity": THREADS - free_slots})
    gpu = GPU.objects.get()
    assert (gpu.instances_used, gpu.current_profile.name) == (6, "A40-8Q")
    assert_inventory_consistent()


def test_racing_members_of_one_tenant_never_exceed_its_quota(lab, catalog):
    lab("lab-a40=A40x4")
    tenant = make_tenant("Acme", "acme-race", max_desktops=5, max_framebuffer_mib=10**7)
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    users = members(THREADS, [tenant])

    outcome = race([lambda u=u: request_desktop(actor=u, template_id=template.pk, duration_hours=1) for u in users])

    assert outcome == Counter({"ok": 5, "QuotaExceeded": THREADS - 5})
    assert Desktop.objects.filter(tenant=tenant).count() == 5
    assert_inventory_consistent()


def test_racing_profiles_never_mix_on_a_gpu(lab, catalog):
    lab("lab-a40=A40x2")
    tenants = [make_tenant(f"T{i}", f"m{i}", max_desktops=50, max_framebuffer_mib=10**7) for i in range(4)]
    small = make_template(
        "Small", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=tenants, vcpus=1, memory_mib=1024
    )
    big = make_template(
        "Big", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=tenants, vcpus=1, memory_mib=1024
    )
    users = members(THREADS, tenants)

    calls = [
        lambda u=u, t=(small if i % 2 else big): request_desktop(actor=u, template_id=t.pk, duration_hours=1)
        for i, u in enumerate(users)
    ]
    outcome = race(calls)

    granted = outcome["ok"]
    assert not [k for k in outcome if k.startswith("BUG")], outcome
    # two boards: each ends up with one type, full (6 small or 2 big): 8, 12 or 4 grants
    assert granted in (4, 8, 12), outcome
    assert_inventory_consistent()


def test_a_lost_claim_leaves_no_lock_on_the_host_it_lost(lab, catalog, monkeypatch):
    """While a request retries elsewhere, the host it lost is free to others: two requests that each
    lost the other's next host must not wait on each other (a deadlock)."""
    from inventory.services import capacity

    a, b = lab("a=A40x1"), lab("b=A40x1")
    GPU.objects.filter(host=b).update(current_profile=VGPUProfile.objects.get(name="A40-8Q"), instances_used=5)
    tenant = make_tenant("Acme", "acme-lock", max_desktops=5, max_framebuffer_mib=10**7)
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    (user,) = members(1, [tenant])
    real_claim = capacity.claim_vgpu
    seen = []

    def other_connection_locks(host_id):
        def run():
            try:
                with connection.cursor() as cur:
                    cur.execute("SET lock_timeout = '2s'")
                    cur.execute("UPDATE inventory_host SET vcpus_used = vcpus_used WHERE id = %s", [host_id])
                seen.append("free")
            except Exception as exc:  # noqa: BLE001 - what the other request would have met
                seen.append(type(exc).__name__)
            finally:
                connections.close_all()

        t = threading.Thread(target=run)
        t.start()
        t.join(timeout=30)

    def claim(gpu_id, prof, host_id=None):
        if host_id == b.pk:  # a rival took b's last instance after this request read the fleet
            return False
        other_connection_locks(b.pk)  # retrying on a: is b still locked by this request?
        return real_claim(gpu_id, prof, host_id)

    monkeypatch.setattr(capacity, "claim_vgpu", claim)
    desktop = request_desktop(actor=user, template_id=template.pk, duration_hours=1)
    assert desktop.host_id == a.pk and seen == ["free"]
    assert Host.objects.get(pk=b.pk).vcpus_used == 0 and GPU.objects.get(host=b).instances_used == 5
