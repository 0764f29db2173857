"""Integration tier: several lab hosts on one real libvirtd (the VM lab), desktops running on each, and
every host's reconciler run again and again: none touches another host's guests.

Needs the VM lab (`scripts/vmlab.sh start`); CI sets PORTAL_REQUIRE_VM_LAB=1 so a broken lab fails
here instead of skipping. Other test runs and `make run` may share the daemon: this test's hosts have
names of their own, its domains are named by this run, and it removes only what it made."""

import os
import uuid

import pytest

from allocations import tasks
from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from inventory.drivers.libvirt import forget_connection
from inventory.models import Host, VGPUProfile
from inventory.services.connect import driver_for
from inventory.services.lab import LabHostSpec, create_lab_host
from inventory.services.sync import sync_host
from inventory.tests.test_vm_lab import ROOT, vm_lab_available

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

# one board per host, and templates of that board's profile, so each host gets desktops of its own
HOSTS = {"a40": ("A40x1", "A40-8Q", 2), "a16": ("A16x1", "A16-2B", 2), "l40s": ("L40Sx1", "L40S-48Q", 1)}


@pytest.fixture
def vm_hosts(catalog, tmp_path):
    missing = vm_lab_available()
    if missing:
        if os.environ.get("PORTAL_REQUIRE_VM_LAB") == "1":
            pytest.fail(f"the VM lab is required here: {missing}")
        pytest.skip(missing)
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    (lab_dir / "payload").symlink_to(ROOT / "var/lab/payload")
    run = uuid.uuid4().hex[:6]
    hosts = {}
    for key, (gpus, _, _) in HOSTS.items():
        host = create_lab_host(LabHostSpec.parse(f"rtest-{run}-{key}={gpus}"), directory=lab_dir, flavour="vm")
        sync_host(host)
        hosts[key] = Host.objects.get(pk=host.pk)
    yield hosts
    for host in hosts.values():  # what this test made, and nothing else on the shared daemon
        driver = driver_for(host)
        for domain in driver.list_domains():
            if domain.metadata.get("host") == host.name or domain.name.startswith(f"{host.name}-"):
                driver.destroy_domain(domain.name)
                driver.undefine_domain(domain.name)
        forget_connection(f"test://{host.lab_xml}")


def start_desktops(hosts, tenant, tenant_member) -> list[Desktop]:
    tenant.quota.max_desktops = 20
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    desktops = []
    for key, (_, profile, count) in HOSTS.items():
        template = make_template(
            f"On {key}", profile=VGPUProfile.objects.get(name=profile), tenants=[tenant], vcpus=1, memory_mib=256
        )
        for _ in range(count):
            desktop = request_desktop(
                actor=tenant_member, template_id=template.pk, duration_hours=1, queue_provisioning=False
            )
            assert desktop.host == hosts[key]
            # named by this run: desktop ids of other test databases on the same daemon would collide
            Desktop.objects.filter(pk=desktop.pk).update(domain_name=f"{hosts[key].name}-{desktop.pk}")
            assert tasks.provision.apply(args=[desktop.pk]).get() == "running"
            desktops.append(Desktop.objects.get(pk=desktop.pk))
    return desktops


def test_every_hosts_reconciler_leaves_the_other_hosts_desktops_running(vm_hosts, tenant, tenant_member):
    desktops = start_desktops(vm_hosts, tenant, tenant_member)
    names = {d.domain_name for d in desktops}
    driver = driver_for(vm_hosts["a40"])  # one daemon: every host's driver sees every host's domains
    assert {d.name for d in driver.list_domains() if d.state == "running"} >= names
    for _ in range(3):
        for host in vm_hosts.values():
            report = tasks.reconcile_host_by_id.apply(args=[host.pk]).get()
            assert (report["orphan_domains"], report["orphan_mdevs"], report["lost_desktops"]) == ([], [], [])
            # domains of other runs or older portals on the same daemon may be reported; none of ours is
            assert [p for p in report["problems"] if any(n in p["what"] for n in names)] == []
    running = {d.name for d in driver.list_domains() if d.state == "running"}
    assert names <= running
    for desktop in desktops:
        assert driver.domain_info(desktop.domain_name).metadata["host"] == desktop.host.name
    assert set(Desktop.objects.filter(pk__in=[d.pk for d in desktops]).values_list("status", flat=True)) == {
        DesktopStatus.RUNNING
    }
    assert not AuditEvent.objects.filter(verb__startswith="reconciler.").exists()
    assert all(h.last_reconciled_at for h in Host.objects.filter(pk__in=[h.pk for h in vm_hosts.values()]))
