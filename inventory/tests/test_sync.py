"""sync_host against the test-driver lab: rows upserted, types recorded, drift marked and audited."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from inventory.drivers.base import DriverError
from inventory.drivers.libvirt import forget_connection
from inventory.drivers.telemetry import simulated_gpu_uuid
from inventory.models import GPU, GPUMdevType, Host, VGPUProfile
from inventory.services.connect import driver_for
from inventory.services.lab import LabHostSpec, write_lab_xml
from inventory.services.sync import sync_host

pytestmark = pytest.mark.django_db


def test_sync_fills_the_inventory_from_libvirt(lab):
    host = lab("lab-a40=A40x2")
    assert (host.state, host.cpu_cores, host.memory_mib, host.libvirt_version) == ("online", 64, 262144, "9.0.0")
    assert host.last_heartbeat is not None and host.last_sync_error == ""
    gpus = list(host.gpus.order_by("pci_address"))
    assert [(g.pci_address, g.model, g.framebuffer_mib, g.present) for g in gpus] == [
        ("0000:41:00.0", "A40", 49152, True),
        ("0000:61:00.0", "A40", 49152, True),
    ]
    assert gpus[0].uuid == simulated_gpu_uuid("lab-a40", "0000:41:00.0")
    types = GPUMdevType.objects.filter(gpu=gpus[0])
    assert {(t.profile.name, t.available_instances) for t in types} == {
        ("A40-4Q", 12),
        ("A40-8Q", 6),
        ("A40-24Q", 2),
        ("A40-48Q", 1),
    }
    assert VGPUProfile.objects.get(name="A40-8Q").mdev_type_id.startswith("nvidia-")
    assert AuditEvent.objects.filter(verb="gpu.discovered").count() == 2
    assert AuditEvent.objects.filter(verb="host.online", object_id=str(host.pk)).exists()


def test_first_sync_of_gpus_made_ahead_of_it_records_them_as_discovered(lab):
    host = lab("lab-l40s=L40Sx2:passthrough", sync=False)  # the lab makes its passthrough GPU rows first
    report = sync_host(host)
    assert report.discovered == ["0000:41:00.0", "0000:61:00.0"] and report.updated == []
    assert AuditEvent.objects.filter(verb="gpu.discovered").count() == 2
    assert not AuditEvent.objects.filter(verb="gpu.updated_by_sync").exists()
    assert set(host.gpus.values_list("mode", "framebuffer_mib")) == {("passthrough", 49152)}
    assert sync_host(host).discovered == []  # seen once: never discovered again


def test_second_sync_changes_nothing(lab):
    host = lab()
    events = AuditEvent.objects.count()
    report = sync_host(host)
    assert (report.discovered, report.vanished, report.updated) == ([], [], [])
    assert AuditEvent.objects.count() == events


def test_vanished_gpu_is_marked_not_deleted_and_comes_back(lab, tmp_path):
    host = lab("lab-a40=A40x2")
    lab_dir = Path(host.lab_xml).parent
    write_lab_xml(LabHostSpec("lab-a40", "A40", 1), lab_dir)  # the second board disappears
    forget_connection(host.libvirt_uri)
    report = sync_host(host)
    assert report.vanished == ["0000:61:00.0"]
    gone = GPU.objects.get(host=host, pci_address="0000:61:00.0")
    assert gone.present is False
    assert AuditEvent.objects.get(verb="gpu.vanished").object_id == str(gone.pk)

    write_lab_xml(LabHostSpec("lab-a40", "A40", 2), lab_dir)
    forget_connection(host.libvirt_uri)
    assert sync_host(host).reappeared == ["0000:61:00.0"]
    gone.refresh_from_db()
    assert gone.present is True
    assert AuditEvent.objects.filter(verb="gpu.reappeared").count() == 1


def test_sync_observes_the_profile_a_gpu_runs_and_its_availability(lab):
    host = lab()
    driver = driver_for(host)
    gpu = driver.list_gpus()[0]
    type_id = next(t.type_id for t in gpu.mdev_types if t.profile_name == "A40-24Q")
    driver.create_mdev("0000:41:00.0", type_id)
    sync_host(host)
    row = GPU.objects.get(host=host, pci_address="0000:41:00.0")
    assert row.current_profile.name == "A40-24Q"
    available = dict(row.mdev_types.values_list("profile__name", "available_instances"))
    assert available == {"A40-4Q": 0, "A40-8Q": 0, "A40-24Q": 1, "A40-48Q": 0}
    assert AuditEvent.objects.filter(verb="gpu.profile_observed").count() == 1


def test_unreachable_host_records_the_error_and_raises(db, catalog):
    host = Host.objects.create(name="far", libvirt_uri="qemu+tcp://127.0.0.1:1/system", state="online")
    with pytest.raises(DriverError) as caught:
        sync_host(host)
    assert caught.value.retryable
    host.refresh_from_db()
    assert "Connection refused" in host.last_sync_error
    assert host.state == "online"  # heartbeats (not one failed sync) take a host offline


def test_nvml_host_without_nvml_says_so_and_keeps_rows(lab):
    host = lab()
    Host.objects.filter(pk=host.pk).update(telemetry_source="nvml")
    host.refresh_from_db()
    report = sync_host(host)
    assert report.telemetry_status == "NVML Shared Library Not Found"
    host.refresh_from_db()
    assert host.telemetry_status == "NVML Shared Library Not Found"
    assert host.gpus.filter(present=True).count() == 2


def test_maintenance_is_left_as_the_admin_set_it(lab):
    host = lab()
    Host.objects.filter(pk=host.pk).update(state="maintenance")
    sync_host(host)
    host.refresh_from_db()
    assert host.state == "maintenance"


def test_sync_inventory_command(lab, capsys):
    lab("lab-a16=A16x4")
    call_command("sync_inventory", "lab-a16")
    assert "lab-a16: 4 GPU(s), 0 vGPU instance(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="unknown host"):
        call_command("sync_inventory", "nope")


def test_lab_command_builds_and_syncs_hosts(catalog, tmp_path, capsys):
    call_command("lab", "create", "--dir", str(tmp_path), "--host", "lab-x=A40x1", "--host", "lab-y=L40Sx2:passthrough")
    out = capsys.readouterr().out
    assert "lab-x: 1 GPU(s)" in out and "lab-y: 2 GPU(s)" in out
    assert list(GPU.objects.filter(host__name="lab-y").values_list("mode", flat=True)) == ["passthrough"] * 2
    assert Host.objects.get(name="lab-x").libvirt_uri == f"test://{tmp_path.resolve()}/lab-x.xml"
    with pytest.raises(CommandError, match="no board Z9"):
        call_command("lab", "create", "--dir", str(tmp_path), "--host", "lab-z=Z9x1")
    with pytest.raises(CommandError, match="must look like"):
        call_command("lab", "create", "--dir", str(tmp_path), "--host", "lab z")
    for name in ("lab-x", "lab-y"):
        forget_connection(Host.objects.get(name=name).libvirt_uri)


def test_lab_queues_lists_every_host_queue(lab, capsys):
    lab("lab-a40=A40x1")
    lab("lab-a16=A16x1")
    capsys.readouterr()
    call_command("lab", "queues")
    assert capsys.readouterr().out.split() == ["host.lab-a16", "host.lab-a40"]


# What qemu:///system answers on a machine without an IOMMU (the VM lab's), and on one with VFIO.
DOMCAPS = """<domainCapabilities><path>/usr/bin/qemu-system-x86_64</path><domain>{virttype}</domain>
  <devices><hostdev supported='yes'>
    <enum name='mode'><value>subsystem</value></enum>
    <enum name='subsysType'><value>usb</value><value>pci</value><value>scsi</value></enum>
    <enum name='pciBackend'>{backends}</enum>
  </hostdev></devices></domainCapabilities>"""


def _conn_answering(answers: dict):
    class Conn:
        def getDomainCapabilities(self, emulatorbin, arch, machine, virttype, flags=0):
            answer = answers[virttype]
            if isinstance(answer, Exception):
                raise answer
            return answer

    return Conn()


def test_passthrough_is_what_libvirts_domain_capabilities_say(monkeypatch):
    import libvirt

    from inventory.drivers import libvirt as driver_module
    from inventory.drivers.libvirt import LibvirtDriver

    def answering(answers):
        monkeypatch.setattr(driver_module, "_connect", lambda uri: _conn_answering(answers))
        return LibvirtDriver("qemu+ssh://gpu-7/system").passthrough()

    vfio = answering({"kvm": DOMCAPS.format(virttype="kvm", backends="<value>default</value><value>vfio</value>")})
    assert vfio.capable is True and "VFIO" in vfio.note
    no_iommu = answering({"kvm": DOMCAPS.format(virttype="kvm", backends="")})
    assert no_iommu.capable is False
    assert "without the VFIO backend (pciBackend: none): the IOMMU is off" in no_iommu.note
    unsupported = libvirt.libvirtError("unsupported configuration: KVM is not supported on this host")
    unsupported.err = (libvirt.VIR_ERR_CONFIG_UNSUPPORTED, libvirt.VIR_FROM_QEMU, str(unsupported), 2, "", "", "", 0, 0)
    tcg = answering({"kvm": unsupported, "qemu": DOMCAPS.format(virttype="qemu", backends="<value>vfio</value>")})
    assert tcg.capable is True and "(qemu)" in tcg.note
    refused = libvirt.libvirtError("Cannot recv data: Connection reset by peer")
    refused.err = (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC, refused.args[0], 2, "", "", "", 0, 0)
    with pytest.raises(DriverError) as caught:  # an unreachable host is a failed sync, not a "no"
        answering({"kvm": refused})
    assert caught.value.retryable


def test_a_host_that_cannot_pass_pci_devices_through_is_not_a_passthrough_host(lab, client, platform_admin):
    host = lab("lab-l40s=L40Sx2:passthrough")
    assert host.passthrough_capable is True  # test labs pass through unless their file says not
    lab_dir = Path(host.lab_xml).parent
    write_lab_xml(LabHostSpec("lab-l40s", "L40S", 2, passthrough=True, iommu=False), lab_dir)
    forget_connection(host.libvirt_uri)
    sync_host(host)
    host.refresh_from_db()
    assert host.passthrough_capable is False
    assert "iommu support='no'" in host.passthrough_note
    changed = AuditEvent.objects.get(verb="host.passthrough_changed", object_id=str(host.pk))
    assert (changed.before["passthrough_capable"], changed.after["passthrough_capable"]) == (True, False)
    assert changed.after["passthrough_note"] == host.passthrough_note
    sync_host(host)  # nothing changed: nothing audited
    assert AuditEvent.objects.filter(verb="host.passthrough_changed").count() == 1
    client.force_login(platform_admin)
    page = client.get(f"/inventory/hosts/{host.name}/").content.decode()
    assert "Cannot hand whole GPUs to desktops: vGPUs only" in page

    write_lab_xml(LabHostSpec("lab-l40s", "L40S", 2, passthrough=True), lab_dir)
    forget_connection(host.libvirt_uri)
    sync_host(host)
    host.refresh_from_db()
    assert host.passthrough_capable is True
    assert AuditEvent.objects.filter(verb="host.passthrough_changed").count() == 2
