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
