"""Integration tier: an idle desktop suspended to disk and resumed on the VM lab's real libvirtd
(qemu:///system, a real QEMU guest): libvirt's managed save writes the guest's memory to its save file
and the domain is shut off with it; resuming starts the domain from that image, running again.

Needs the VM lab (`scripts/vmlab.sh start`); CI sets PORTAL_REQUIRE_VM_LAB=1 so a broken lab fails here
instead of skipping. The daemon is shared: this test's domain is named by this run and removed after."""

from datetime import timedelta
from pathlib import Path

import libvirt
import pytest
from django.utils import timezone

from allocations import tasks
from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.services import idle, suspend
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from allocations.tests.test_idle import verbs, vgpu_minute
from inventory.models import VGPUProfile
from inventory.services.connect import driver_for
from inventory.services.sync import sync_host
from inventory.tests.test_vm_lab import vm_host  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

SAVE_DIR = Path("/var/lib/libvirt/qemu/save")


def test_an_idle_desktop_is_suspended_to_disk_and_resumed_on_the_vm_lab(
    vm_host,  # noqa: F811
    tenant,
    tenant_member,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.PORTAL_IDLE_GRACE_S = 0
    sync_host(vm_host)
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    template = make_template(
        "Idle CAD",
        profile=VGPUProfile.objects.get(name="A40-8Q"),
        tenants=[tenant],
        vcpus=1,
        memory_mib=256,
        idle_limit_minutes=30,
    )
    desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1, queue_provisioning=False)
    Desktop.objects.filter(pk=desktop.pk).update(domain_name=f"{vm_host.name}-{desktop.pk}")
    assert tasks.provision.apply(args=[desktop.pk]).get() == "running"
    name = Desktop.objects.get(pk=desktop.pk).domain_name
    driver = driver_for(vm_host)
    conn = libvirt.open("qemu:///system")
    try:
        # its vGPU idle (1 % SM) and no console input for 40 minutes, by the clock of the samples
        now = timezone.now().replace(microsecond=0)
        Desktop.objects.filter(pk=desktop.pk).update(started_at=now - timedelta(minutes=40))
        desktop = Desktop.objects.select_related("template", "host").get(pk=desktop.pk)
        for n in range(41):
            vgpu_minute(desktop, now - timedelta(minutes=40 - n), 1.0)

        with django_capture_on_commit_callbacks(execute=True):
            assert idle.sweep_idle(now=now)["warned"] == 1
            assert idle.sweep_idle(now=now + timedelta(seconds=1))["suspended"] == 1
        assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.SUSPENDED
        assert tasks.suspend_desktop.apply(args=[desktop.pk]).get() == "suspended"

        domain = conn.lookupByName(name)
        state, reason = domain.state()
        assert (state, reason) == (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SAVED)
        assert domain.hasManagedSaveImage(0) == 1 and driver.has_managed_save(name)
        if SAVE_DIR.is_dir() and SAVE_DIR.stat().st_mode & 0o005:  # readable where the daemon lets us look
            assert (SAVE_DIR / f"{name}.save").stat().st_size > 0
        desktop = Desktop.objects.get(pk=desktop.pk)
        assert desktop.suspended_at is not None and desktop.holds_capacity

        with django_capture_on_commit_callbacks(execute=True):
            suspend.request_resume(desktop, actor=tenant_member)
        assert tasks.resume_desktop.apply(args=[desktop.pk]).get() == "running"
        assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert domain.hasManagedSaveImage(0) == 0
        desktop = Desktop.objects.get(pk=desktop.pk)
        assert desktop.status == DesktopStatus.RUNNING and desktop.vnc_port
        assert verbs(desktop)[-4:] == [
            "desktop.idle_warned",
            "desktop.suspended",
            "desktop.resume_requested",
            "desktop.resumed",
        ]
    finally:
        driver.destroy_domain(name)
        driver.undefine_domain(name)
        conn.close()
