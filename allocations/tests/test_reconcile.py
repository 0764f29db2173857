"""The reconciler and heartbeats: libvirt reality vs the database, fixed and audited.

Several hosts (and deployments) can share one libvirt daemon: a reconciler touches only what names its
own deployment and host, and never a domain whose desktop still holds capacity anywhere."""

import hashlib
import hmac
import os
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from allocations import tasks
from allocations.choices import DesktopStatus
from allocations.models import Desktop, Quota
from allocations.services import hosting, lifecycle
from allocations.services.reconcile import owner_of, reconcile_host
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from core import live
from inventory import tasks as inventory_tasks
from inventory.drivers.base import DomainSpec, DriverError
from inventory.drivers.libvirt import LibvirtDriver
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


def plant(driver, name: str, **metadata) -> None:
    """A running domain on the host's daemon, as some portal (or none) would have made it."""
    driver.define_domain(
        DomainSpec(
            name=name,
            # one UUID per name: a sum of the name's characters gave "desktop-765" and "desktop-990" the same
            # one, and defining the second failed whenever a test's desktop happened to be number 765
            uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"portal-test-domain:{name}")),
            vcpus=1,
            memory_mib=512,
            disk_image="/x.qcow2",
            metadata=metadata,
        )
    )
    driver.start_domain(name)


def ours(host: Host, desktop: int) -> dict:
    return {"deployment": settings.PORTAL_DEPLOYMENT_ID, "host": host.name, "desktop": desktop}


def test_deployment_id_is_derived_from_the_secret_key():
    expected = hmac.new(settings.SECRET_KEY.encode(), b"portal-deployment", hashlib.sha256).hexdigest()[:16]
    assert settings.PORTAL_DEPLOYMENT_ID == os.environ.get("PORTAL_DEPLOYMENT_ID", expected)


def test_every_domain_names_its_deployment_host_and_desktop(running):
    host, desktop = running
    metadata = driver_for(host).domain_info(desktop.domain_name).metadata
    assert metadata["deployment"] == settings.PORTAL_DEPLOYMENT_ID
    assert (metadata["host"], metadata["desktop"]) == ("lab-a40", str(desktop.pk))
    assert owner_of(metadata, host="lab-a40") == "ours"
    assert owner_of(metadata, host="lab-a16") == owner_of(metadata, host="lab-a40", deployment="other") == "foreign"


def test_another_hosts_desktops_on_the_same_daemon_are_not_touched(running, lab, tenant, tenant_member):
    host, desktop = running
    a16 = lab("lab-a16=A16x4")
    template = make_template("Light", profile=VGPUProfile.objects.get(name="A16-2B"), tenants=[tenant])
    elsewhere = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=2)
    assert elsewhere.host == a16
    Desktop.objects.filter(pk=elsewhere.pk).update(status=DesktopStatus.RUNNING, domain_name=f"desktop-{elsewhere.pk}")
    elsewhere.refresh_from_db()
    driver = driver_for(host)
    # lab-a16's running desktop, and an ended one of lab-a16's, on lab-a40's daemon: lab-a16's to keep or clean
    plant(driver, elsewhere.domain_name, **hosting.ownership_metadata(elsewhere))
    plant(driver, "desktop-990", **ours(a16, 990))
    before = {d.name: d.state for d in driver.list_domains()}
    assert set(before.values()) == {"running"} and len(before) == 3
    for _ in range(3):
        report = reconcile_host(host)
        assert (report.orphan_domains, report.lost_desktops, report.problems) == ([], [], [])
    assert {d.name: d.state for d in driver.list_domains()} == before
    assert set(Desktop.objects.filter(pk__in=[desktop.pk, elsewhere.pk]).values_list("status", flat=True)) == {
        "running"
    }
    assert not AuditEvent.objects.filter(verb__startswith="reconciler.").exists()


def test_another_deployments_domains_are_not_touched(running):
    host, desktop = running
    driver = driver_for(host)
    plant(driver, "desktop-991", deployment="staging-portal", host="lab-a40", desktop=991)
    plant(driver, "staging-desktop-1", deployment="staging-portal", host="lab-a40", desktop=desktop.pk + 1)
    report = reconcile_host(host)
    assert (report.orphan_domains, report.unowned_domains, report.problems) == ([], [], [])
    assert [d.state for d in driver.list_domains()] == ["running"] * 3
    assert not AuditEvent.objects.filter(verb__startswith="reconciler.").exists()


def test_domains_without_owner_metadata_are_left_alone_and_reported(running, client, platform_admin):
    host, desktop = running
    driver = driver_for(host)
    plant(driver, "desktop-999", desktop=999)  # as portals made them before deployment and host were recorded
    plant(driver, "someone-elses-vm")
    report = reconcile_host(host)
    assert (report.orphan_domains, report.unowned_domains) == ([], ["desktop-999"])
    assert {d.name for d in driver.list_domains()} == {desktop.domain_name, "desktop-999", "someone-elses-vm"}
    assert not AuditEvent.objects.filter(verb__startswith="reconciler.").exists()
    host.refresh_from_db()
    assert host.last_reconciled_at is not None
    assert [p["what"] for p in host.reconcile_problems] == ["domain desktop-999"]
    assert "older portal version" in host.reconcile_problems[0]["detail"]
    client.force_login(platform_admin)
    page = client.get(f"/inventory/hosts/{host.name}/").content.decode()
    assert "Reconciler" in page and "domain desktop-999" in page and "older portal version" in page
    assert "1 reconcile problem" in client.get("/inventory/").content.decode()


def test_orphans_of_this_deployment_and_host_are_removed(running, client, platform_admin):
    host, desktop = running
    driver = driver_for(host)
    # the desktop ended but its teardown never ran: its domain and mdev are left on the host
    lifecycle.transition(desktop.pk, DesktopStatus.STOPPING)
    lifecycle.transition(desktop.pk, DesktopStatus.RELEASED, end_reason="released")
    plant(driver, "desktop-999", **ours(host, 999))  # a desktop this database does not know
    type_id = driver.list_gpus()[1].mdev_types[0].type_id
    unknown_mdev = driver.create_mdev("0000:61:00.0", type_id)  # no desktop of ours names it: not ours to remove
    report = reconcile_host(host)
    assert sorted(report.orphan_domains) == sorted([desktop.domain_name, "desktop-999"])
    assert report.orphan_mdevs == [str(desktop.mdev_uuid)]
    assert driver.list_domains() == []
    assert [m.uuid for m in driver.list_mdevs()] == [unknown_mdev.uuid]
    assert report.problems == [
        {
            "what": f"mediated device {unknown_mdev.uuid}",
            "detail": "unused, and no desktop of this portal on lab-a40 owns it; left alone",
        }
    ]
    assert AuditEvent.objects.filter(verb__startswith="reconciler.").count() == 3
    again = reconcile_host(host)
    assert (again.orphan_domains, again.orphan_mdevs, again.lost_desktops) == ([], [], [])
    driver.remove_mdev(unknown_mdev.uuid)
    reconcile_host(host)
    client.force_login(platform_admin)
    assert "No problems at" in client.get(f"/inventory/hosts/{host.name}/").content.decode()
    assert "reconcile problem" not in client.get("/inventory/").content.decode()


def test_running_desktop_whose_domain_vanished_fails_and_frees_once(running, tenant, monkeypatch):
    host, desktop = running
    told = []
    monkeypatch.setattr(live, "publish_on_commit", lambda groups, kind, data: told.append((kind, data)))
    driver = driver_for(host)
    driver.destroy_domain(desktop.domain_name)
    driver.undefine_domain(desktop.domain_name)
    report = tasks.reconcile_host_by_id.apply(args=[host.pk]).get()
    assert report["lost_desktops"] == [desktop.pk]
    assert tasks.reconcile_host_by_id.apply(args=[host.pk]).get()["lost_desktops"] == []
    desktop.refresh_from_db()
    assert (desktop.status, desktop.end_reason, desktop.holds_capacity) == ("failed", "host-lost", False)
    assert desktop.status_reason == f"Host lost: its virtual machine ({desktop.domain_name}) is gone from lab-a40."
    quota, host = Quota.objects.get(tenant=tenant), Host.objects.get(pk=host.pk)
    assert (quota.desktops_held, quota.framebuffer_held_mib) == (0, 0)
    assert (host.vcpus_used, host.memory_used_mib) == (0, 0)
    assert GPU.objects.filter(host=host, instances_used__gt=0).count() == 0
    assert driver.list_mdevs() == []
    assert AuditEvent.objects.filter(verb="desktop.failed", object_id=str(desktop.pk)).count() == 1
    assert AuditEvent.objects.filter(verb="reconciler.desktop_lost", object_id=str(desktop.pk)).count() == 1
    assert [(d["id"], d["status"]) for kind, d in told if kind == "desktop.status"] == [(desktop.pk, "failed")]


def test_a_stopped_domain_of_ours_fails_its_desktop_and_is_removed(running):
    host, desktop = running
    driver = driver_for(host)
    driver.destroy_domain(desktop.domain_name)  # powered off, still defined
    assert reconcile_host(host).lost_desktops == [desktop.pk]
    desktop.refresh_from_db()
    assert desktop.status_reason == (
        f"Host lost: its virtual machine ({desktop.domain_name}) on lab-a40 is shutoff, not running."
    )
    assert driver.list_domains() == [] and driver.list_mdevs() == []


def test_a_running_desktops_domain_from_before_owner_metadata_is_neither_touched_nor_reported(running):
    host, desktop = running
    driver = driver_for(host)
    driver.destroy_domain(desktop.domain_name)
    driver.undefine_domain(desktop.domain_name)
    plant(driver, desktop.domain_name, desktop=desktop.pk, tenant="acme")  # as the previous version defined it
    report = reconcile_host(host)
    assert (report.orphan_domains, report.lost_desktops, report.unowned_domains, report.problems) == ([], [], [], [])
    assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.RUNNING


def test_a_driver_error_on_one_domain_does_not_stop_the_rest(running, monkeypatch):
    host, desktop = running
    driver = driver_for(host)
    plant(driver, "desktop-997", **ours(host, 997))
    plant(driver, "desktop-998", **ours(host, 998))
    driver.destroy_domain(desktop.domain_name)
    driver.undefine_domain(desktop.domain_name)
    destroy = LibvirtDriver.destroy_domain

    def flaky(self, name):
        if name == "desktop-997":
            raise DriverError("cannot destroy domain desktop-997", retryable=False, detail="Domain not found")
        destroy(self, name)

    monkeypatch.setattr(LibvirtDriver, "destroy_domain", flaky)
    report = reconcile_host(host)
    assert report.orphan_domains == ["desktop-998"]
    assert report.lost_desktops == [desktop.pk]
    assert report.problems == [
        {"what": "domain desktop-997", "detail": "cannot destroy domain desktop-997: Domain not found"}
    ]
    assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.FAILED
    assert Host.objects.get(pk=host.pk).reconcile_problems == report.problems
    monkeypatch.undo()
    assert reconcile_host(host).orphan_domains == ["desktop-997"]
    assert Host.objects.get(pk=host.pk).reconcile_problems == []


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


def test_a_domain_of_another_deployment_named_like_a_desktop_is_never_adopted_or_removed(
    lab, catalog, tenant, tenant_member
):
    """Two portals on one daemon both name domains desktop-<id>: the build must not define over, start,
    reboot or tear down the other portal's guest; it fails in words and leaves it running."""
    host = lab()
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=2, queue_provisioning=False)
    driver = driver_for(host)
    theirs = f"desktop-{desktop.pk}"
    plant(driver, theirs, deployment="staging-portal", host=host.name, desktop=desktop.pk)
    assert tasks.provision.apply(args=[desktop.pk]).get() == "failed"
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.FAILED
    assert desktop.status_reason == "The desktop could not be started on its host."
    detail = AuditEvent.objects.get(verb="desktop.failed", object_id=str(desktop.pk)).after["detail"]
    assert "belongs to something else" in detail
    info = driver.domain_info(theirs)
    assert info is not None and info.state == "running" and info.metadata["deployment"] == "staging-portal"
    assert not hosting.claims_domain(desktop, info)
    hosting.teardown_desktop(desktop)  # the teardown of a desktop never removes a domain that is not its own
    assert driver.domain_info(theirs).state == "running"
