"""The reconciler and heartbeats: libvirt reality vs the database, fixed and audited."""

from datetime import timedelta

import pytest
from django.utils import timezone

from allocations import tasks
from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.services.reconcile import reconcile_host
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from inventory import tasks as inventory_tasks
from inventory.drivers.base import DomainSpec
from inventory.models import GPU, Host, VGPUProfile
from inventory.services.connect import driver_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(lab, catalog, tenant, tenant_member, run_tasks):
    host = lab()
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.save()
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=[tenant])
    with run_tasks():
        desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=2)
    return host, Desktop.objects.get(pk=desktop.pk)


def test_planted_orphans_are_removed_and_foreign_domains_left_alone(running):
    host, desktop = running
    driver = driver_for(host)
    type_id = driver.list_gpus()[1].mdev_types[0].type_id
    orphan_mdev = driver.create_mdev("0000:61:00.0", type_id)
    driver.define_domain(
        DomainSpec(
            name="desktop-999",
            uuid="6f1c1d6e-0000-4000-8000-000000000999",
            vcpus=1,
            memory_mib=512,
            disk_image="/x.qcow2",
            metadata={"desktop": 999},
        )
    )
    driver.define_domain(
        DomainSpec(
            name="someone-elses-vm",
            uuid="6f1c1d6e-0000-4000-8000-000000000888",
            vcpus=1,
            memory_mib=512,
            disk_image="/y.qcow2",
        )
    )
    report = reconcile_host(host)
    assert report.orphan_domains == ["desktop-999"]
    assert report.orphan_mdevs == [orphan_mdev.uuid]
    assert report.lost_desktops == []
    assert {d.name for d in driver.list_domains()} == {desktop.domain_name, "someone-elses-vm"}
    assert [m.uuid for m in driver.list_mdevs()] == [str(desktop.mdev_uuid)]
    assert AuditEvent.objects.filter(verb__startswith="reconciler.").count() == 2
    assert reconcile_host(host).as_dict() == {
        "host": "lab-a40",
        "orphan_domains": [],
        "orphan_mdevs": [],
        "lost_desktops": [],
    }


def test_running_desktop_whose_domain_vanished_fails_and_frees(running):
    host, desktop = running
    driver = driver_for(host)
    driver.destroy_domain(desktop.domain_name)
    driver.undefine_domain(desktop.domain_name)
    report = tasks.reconcile_host_by_id.apply(args=[host.pk]).get()
    assert report["lost_desktops"] == [desktop.pk]
    desktop.refresh_from_db()
    assert (desktop.status, desktop.end_reason, desktop.holds_capacity) == ("failed", "host-lost", False)
    assert "its domain is gone" in desktop.status_reason
    assert GPU.objects.filter(host=host, instances_used__gt=0).count() == 0
    assert driver.list_mdevs() == []


def test_provisioning_desktops_are_not_taken_for_orphans(lab, catalog, tenant, tenant_member):
    host = lab()
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.save()
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=[tenant])
    desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=2)
    driver = driver_for(host)
    gpu = desktop.gpus.get()
    driver.create_mdev(gpu.pci_address, gpu.mdev_types.get(profile=desktop.profile).type_id, str(desktop.mdev_uuid))
    assert reconcile_host(host).orphan_mdevs == []
    assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.REQUESTED


def test_silent_host_goes_offline_and_heartbeat_brings_the_time_back(lab, settings):
    host = lab()
    Host.objects.filter(pk=host.pk).update(last_heartbeat=timezone.now() - timedelta(minutes=10))
    assert inventory_tasks.check_heartbeats.apply().get() == ["lab-a40"]
    assert Host.objects.get(pk=host.pk).state == "offline"
    assert AuditEvent.objects.filter(verb="host.offline").count() == 1
    assert inventory_tasks.heartbeat.apply(args=[host.pk]).get() is True
    assert Host.objects.get(pk=host.pk).last_heartbeat > timezone.now() - timedelta(seconds=5)
    assert inventory_tasks.check_heartbeats.apply().get() == []


def test_heartbeat_of_an_unreachable_host_fails(db):
    host = Host.objects.create(name="far", libvirt_uri="qemu+tcp://127.0.0.1:1/system", state="online")
    assert inventory_tasks.heartbeat.apply(args=[host.pk]).get() is False
    assert Host.objects.get(pk=host.pk).last_heartbeat is None
