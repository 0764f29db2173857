"""The libvirt driver against libvirt's own test driver: discovery, mdevs, domains, every error path."""

import uuid
import xml.etree.ElementTree as ET
from dataclasses import replace

import libvirt
import pytest

from inventory.drivers.base import DomainSpec, DriverError
from inventory.drivers.libvirt import LabConfig, LibvirtDriver, translate
from inventory.drivers.libvirt_xml import GUEST_AGENT_CHANNEL, build_domain_xml, parse_domain_xml
from inventory.services.connect import driver_for

pytestmark = pytest.mark.django_db


def type_id(driver, profile: str) -> str:
    gpu = driver.list_gpus()[0]
    return next(t.type_id for t in gpu.mdev_types if t.profile_name == profile)


def spec(name="desktop-1", **fields) -> DomainSpec:
    values = {
        "uuid": str(uuid.uuid4()),
        "vcpus": 2,
        "memory_mib": 2048,
        "domain_type": "qemu",
        "disk_image": "/var/lib/portal/images/debian.qcow2",
    }
    values.update(fields)
    return DomainSpec(name=name, **values)


def test_discovery_reads_gpus_types_and_host_info_through_libvirt(lab):
    host = lab("lab-a40=A40x2", sync=False)
    discovery = driver_for(host).discover()
    assert (discovery.info.cpu_cores, discovery.info.memory_mib) == (64, 262144)
    assert [g.pci_address for g in discovery.gpus] == ["0000:41:00.0", "0000:61:00.0"]
    gpu = discovery.gpus[0]
    assert (gpu.model, gpu.vendor_id, gpu.product_name) == ("A40", "0x10de", "GA102GL [A40]")
    assert {(t.profile_name, t.available_instances) for t in gpu.mdev_types} == {
        ("A40-4Q", 12),
        ("A40-8Q", 6),
        ("A40-24Q", 2),
        ("A40-48Q", 1),
    }
    assert all(t.name.startswith("NVIDIA ") and t.type_id.startswith("nvidia-") for t in gpu.mdev_types)
    assert discovery.mdevs == () and discovery.domains == ()


def test_lab_enforces_one_type_per_gpu_and_the_instance_limit(lab):
    driver = driver_for(lab(sync=False))
    big = type_id(driver, "A40-24Q")
    first = driver.create_mdev("0000:41:00.0", big)
    driver.create_mdev("0000:41:00.0", big)
    with pytest.raises(DriverError, match="no free nvidia-.* instance") as full:
        driver.create_mdev("0000:41:00.0", big)
    assert full.value.retryable is False
    driver.remove_mdev(first.uuid)
    with pytest.raises(DriverError, match="already runs NVIDIA A40-24Q .* one vGPU type at a time"):
        driver.create_mdev("0000:41:00.0", type_id(driver, "A40-8Q"))
    # the other board is still empty and takes any type
    assert driver.create_mdev("0000:61:00.0", type_id(driver, "A40-8Q")).parent_pci == "0000:61:00.0"
    available = {t.profile_name: t.available_instances for t in driver.discover().gpus[0].mdev_types}
    assert available == {"A40-4Q": 0, "A40-8Q": 0, "A40-24Q": 1, "A40-48Q": 0}


def test_unknown_type_and_unknown_gpu_are_permanent_errors(lab):
    driver = driver_for(lab(sync=False))
    with pytest.raises(DriverError, match="offers no vGPU type nvidia-1") as caught:
        driver.create_mdev("0000:41:00.0", "nvidia-1")
    assert not caught.value.retryable
    with pytest.raises(DriverError, match="no NVIDIA GPU at 0000:99:00.0"):
        driver.create_mdev("0000:99:00.0", type_id(driver, "A40-8Q"))


def test_a_domain_uses_its_mdev_exclusively_and_teardown_frees_it(lab):
    driver = driver_for(lab(sync=False))
    mdev = driver.create_mdev("0000:41:00.0", type_id(driver, "A40-8Q"))
    info = driver.define_domain(spec(mdev_uuids=(mdev.uuid,), metadata={"desktop": 7}))
    assert info.state == "shutoff" and info.mdev_uuids == (mdev.uuid,) and info.metadata == {"desktop": "7"}
    assert driver.define_domain(spec(mdev_uuids=(mdev.uuid,))).uuid == info.uuid  # idempotent by name
    with pytest.raises(DriverError, match=f"{mdev.uuid} is in use by domain desktop-1"):
        driver.define_domain(spec("desktop-2", mdev_uuids=(mdev.uuid,)))
    assert driver.domain_info("desktop-2") is None
    with pytest.raises(DriverError, match="in use by domain desktop-1"):
        driver.remove_mdev(mdev.uuid)
    assert driver.start_domain("desktop-1").state == "running"
    assert driver.list_mdevs()[0].domain == "desktop-1"
    with pytest.raises(DriverError, match="still running"):
        driver.undefine_domain("desktop-1")
    driver.destroy_domain("desktop-1")
    driver.undefine_domain("desktop-1")
    driver.remove_mdev(mdev.uuid)
    driver.remove_mdev(mdev.uuid)  # already gone: no-op
    driver.destroy_domain("desktop-1")  # already gone: no-op
    assert driver.list_mdevs() == [] and driver.list_domains() == []


def test_mdev_store_is_shared_across_driver_instances(lab):
    host = lab(sync=False)
    mdev = driver_for(host).create_mdev("0000:41:00.0", type_id(driver_for(host), "A40-8Q"))
    assert [m.uuid for m in driver_for(host).list_mdevs()] == [mdev.uuid]


def test_without_the_lab_store_the_test_driver_refuses_mdevs_with_a_clear_error(lab):
    host = lab(sync=False)
    plain = LibvirtDriver(host.libvirt_uri)
    with pytest.raises(DriverError) as caught:
        plain.create_mdev("0000:41:00.0", type_id(plain, "A40-8Q"))
    assert "cannot create mediated devices" in caught.value.message
    assert "virNodeDeviceDefineXML" in caught.value.detail  # libvirt's own words are kept
    assert caught.value.retryable is False and caught.value.code == libvirt.VIR_ERR_NO_SUPPORT


def test_connection_refused_is_retryable_and_keeps_libvirts_message():
    with pytest.raises(DriverError) as caught:
        LibvirtDriver("qemu+tcp://127.0.0.1:1/system").host_info()
    assert caught.value.retryable is True
    assert "Connection refused" in caught.value.detail


def test_missing_lab_file_is_a_permanent_error(tmp_path):
    with pytest.raises(DriverError, match="failed to parse xml document") as caught:
        LibvirtDriver(f"test://{tmp_path}/missing.xml").host_info()
    assert caught.value.retryable is False


def test_operations_on_a_missing_domain(lab):
    driver = driver_for(lab(sync=False))
    with pytest.raises(DriverError, match="no domain named ghost") as caught:
        driver.start_domain("ghost")
    assert not caught.value.retryable
    assert driver.domain_info("ghost") is None


@pytest.mark.parametrize(
    "fields,expected_hostdev",
    [
        ({"mdev_uuids": ("c0ffee00-0000-4000-8000-000000000001",)}, "type='mdev'"),
        ({"passthrough_pci": ("0000:41:00.0", "0000:61:00.0")}, "type='pci'"),
    ],
)
def test_domain_xml_for_mdev_and_passthrough_is_accepted_by_libvirts_parser(lab, fields, expected_hostdev):
    driver = driver_for(lab(sync=False))
    xml = build_domain_xml(spec(**fields))
    domain = driver.conn.defineXML(xml)  # libvirt parses and validates it
    stored = domain.XMLDesc(0)
    assert expected_hostdev in stored and "graphics type='vnc'" in stored and "listen='127.0.0.1'" in stored
    info = parse_domain_xml(stored, "shutoff")
    assert info.mdev_uuids == fields.get("mdev_uuids", ())
    assert info.passthrough_pci == fields.get("passthrough_pci", ())
    domain.undefine()


def test_vm_lab_records_the_vgpu_in_metadata_instead_of_a_hostdev():
    xml = build_domain_xml(spec(mdev_uuids=("c0ffee00-0000-4000-8000-000000000001",), attach_vgpu_as_hostdev=False))
    assert "hostdev" not in xml
    assert parse_domain_xml(xml, "shutoff").mdev_uuids == ("c0ffee00-0000-4000-8000-000000000001",)


def test_libvirt_rejects_bad_xml_as_a_permanent_error(lab):
    driver = driver_for(lab(sync=False))
    with pytest.raises(DriverError, match="cannot define domain desktop-1") as caught:
        driver.define_domain(spec(domain_type="bogus"))
    assert not caught.value.retryable and "invalid domain type" in caught.value.detail
    with pytest.raises(DriverError, match="exactly one of"):
        driver.define_domain(spec(kernel="/boot/vmlinuz"))
    with pytest.raises(DriverError, match="domain name"):
        driver.define_domain(spec(name="bad name!"))


def test_translate_classifies_transport_errors_only_as_retryable():
    class FakeError(libvirt.libvirtError):
        def __init__(self, code, domain):
            self.err = (code, domain, "boom", 2, None, None, None, 0, 0)

    assert translate(FakeError(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC), "x").retryable
    assert not translate(FakeError(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_QEMU), "x").retryable
    assert translate(FakeError(libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_FROM_QEMU), "x").retryable
    assert not translate(FakeError(libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_FROM_DOMAIN), "x").retryable


VGPU = "c0ffee00-0000-4000-8000-000000000001"


def test_a_vgpu_domain_shows_the_vgpus_display_with_a_boot_framebuffer(lab):
    """The console shows the vGPU's output (display='on'), the boot screen through ramfb, and no
    emulated VGA beside it that VNC would show instead."""
    driver = driver_for(lab(sync=False))
    domain = driver.conn.defineXML(build_domain_xml(spec(mdev_uuids=(VGPU,))))
    stored = domain.XMLDesc(0)
    domain.undefine()
    hostdev = ET.fromstring(stored).find("devices/hostdev[@type='mdev']")
    assert (hostdev.get("model"), hostdev.get("display"), hostdev.get("ramfb")) == ("vfio-pci", "on", "on")
    assert [v.get("type") for v in ET.fromstring(stored).findall("devices/video/model")] == ["none"]
    assert ET.fromstring(stored).find("devices/graphics[@type='vnc']").get("listen") == "127.0.0.1"


def test_a_passthrough_domain_keeps_the_emulated_display_its_rescue_console():
    root = ET.fromstring(build_domain_xml(spec(passthrough_pci=("0000:41:00.0",))))
    hostdev = root.find("devices/hostdev[@type='pci']")
    assert hostdev.get("display") is None and hostdev.get("ramfb") is None
    assert root.find("devices/video") is None  # libvirt adds its default emulated VGA


def test_the_vgpu_display_can_be_left_off():
    root = ET.fromstring(build_domain_xml(spec(mdev_uuids=(VGPU,), vgpu_display=False)))
    assert root.find("devices/hostdev[@type='mdev']").get("display") is None
    assert root.find("devices/video") is None


def test_real_domains_get_the_guest_agent_channel(lab):
    driver = driver_for(lab(sync=False))
    domain = driver.conn.defineXML(build_domain_xml(spec()))
    stored = ET.fromstring(domain.XMLDesc(0))
    domain.undefine()
    (channel,) = stored.findall("devices/channel")
    assert channel.get("type") == "unix"
    target = channel.find("target")
    assert (target.get("type"), target.get("name")) == ("virtio", GUEST_AGENT_CHANNEL)


def test_a_vm_lab_guest_is_named_on_its_kernel_command_line_and_has_no_agent(tmp_path):
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "vmlinuz").write_bytes(b"k")
    (payload / "initrd.gz").write_bytes(b"i")
    guest = LabConfig(tmp_path / "lab.xml").guest(spec(name="desktop-12", mdev_uuids=(VGPU,)))
    assert "portal.desktop=desktop-12" in guest.cmdline.split()
    assert guest.serial_log.endswith("/desktop-12-serial.log") and not guest.guest_agent
    root = ET.fromstring(build_domain_xml(replace(guest, attach_vgpu_as_hostdev=False)))
    assert root.find("devices/channel") is None and root.find("devices/serial[@type='file']") is not None


def test_test_driver_guests_are_ready_as_soon_as_they_run(lab):
    driver = driver_for(lab(sync=False))
    driver.define_domain(spec())
    with pytest.raises(DriverError, match="desktop-1 is not running") as caught:
        driver.wait_guest_ready("desktop-1", timeout_s=5)
    assert not caught.value.retryable
    driver.start_domain("desktop-1")
    driver.wait_guest_ready("desktop-1", timeout_s=5)  # returns at once
    with pytest.raises(DriverError, match="no domain named ghost"):
        driver.wait_guest_ready("ghost", timeout_s=5)
    driver.destroy_domain("desktop-1")
    driver.undefine_domain("desktop-1")
