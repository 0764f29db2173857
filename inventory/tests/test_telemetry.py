"""Telemetry: the pynvml path against a fake module that raises pynvml's real NVMLError classes,
and the simulated source following what runs on the host."""

from types import SimpleNamespace

import pynvml
import pytest

from inventory.drivers.base import DomainInfo, GPUDevice, Mdev, MdevType
from inventory.drivers.telemetry import NVMLTelemetry, SimulatedTelemetry

MIB = 1024 * 1024


def _value(number):
    value = pynvml.c_nvmlValue_t()
    value.uiVal = number
    return value


class FakeNVML:
    """Just enough of pynvml's surface, backed by dicts; errors are pynvml's own classes."""

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, gpus, *, init_error=None, lost=(), vgpu_unsupported=()):
        self.gpus = gpus
        self.init_error = init_error
        self.lost = set(lost)
        self.vgpu_unsupported = set(vgpu_unsupported)
        self.initialised = 0

    def nvmlInit(self):
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def _check(self, handle):
        if handle in self.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return self.gpus[handle]

    def nvmlDeviceGetPciInfo(self, handle):
        return SimpleNamespace(busId=self.gpus[handle]["bus"])

    def nvmlDeviceGetUUID(self, handle):
        return self._check(handle)["uuid"]

    def nvmlDeviceGetName(self, handle):
        return self._check(handle)["name"]

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=self._check(handle)["sm"], memory=17)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=49152 * MIB, used=self._check(handle)["fb_used"] * MIB, free=0)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return 54

    def nvmlDeviceGetPowerUsage(self, handle):
        return 123456  # mW

    def nvmlDeviceGetEncoderUtilization(self, handle):
        return 12, 167000

    def nvmlDeviceGetDecoderUtilization(self, handle):
        return 3, 167000

    def nvmlDeviceGetActiveVgpus(self, handle):
        if handle in self.vgpu_unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return list(self.gpus[handle].get("vgpus", {}))

    def nvmlDeviceGetVgpuUtilization(self, handle, timestamp):
        return [
            SimpleNamespace(
                vgpuInstance=i, smUtil=_value(v["sm"]), memUtil=_value(9), encUtil=_value(4), decUtil=_value(1)
            )
            for i, v in self.gpus[handle].get("vgpus", {}).items()
        ]

    def _vgpu(self, instance):
        for gpu in self.gpus:
            if instance in gpu.get("vgpus", {}):
                return gpu["vgpus"][instance]
        raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def nvmlVgpuInstanceGetMdevUUID(self, instance):
        return self._vgpu(instance)["mdev"].encode()  # bytes, as the real binding returns

    def nvmlVgpuInstanceGetType(self, instance):
        return 558

    def nvmlVgpuTypeGetName(self, type_id):
        return "NVIDIA A40-8Q"

    def nvmlVgpuInstanceGetFbUsage(self, instance):
        return self._vgpu(instance)["fb"] * MIB


def two_gpus():
    return [
        {
            "bus": b"00000000:41:00.0",
            "uuid": "GPU-aaaa",
            "name": "NVIDIA A40",
            "sm": 63,
            "fb_used": 9000,
            "vgpus": {7: {"mdev": "C0FFEE00-0000-4000-8000-000000000001", "sm": 55, "fb": 4200}},
        },
        {"bus": b"00000000:61:00.0", "uuid": "GPU-bbbb", "name": "NVIDIA A40", "sm": 0, "fb_used": 0},
    ]


def test_nvml_reads_every_gpu_and_its_vgpus():
    fake = FakeNVML(two_gpus())
    sample = NVMLTelemetry(fake).sample()
    assert sample.status == "ok" and sample.source == "nvml"
    first, second = sample.gpus
    assert (first.pci_address, first.uuid, first.sm_util, first.mem_util) == ("0000:41:00.0", "GPU-aaaa", 63.0, 17.0)
    assert (first.fb_used_mib, first.fb_total_mib, first.temperature_c, first.power_w) == (9000, 49152, 54.0, 123.5)
    assert (first.encoder_util, first.decoder_util) == (12.0, 3.0)
    (vgpu,) = first.vgpus
    assert vgpu.mdev_uuid == "c0ffee00-0000-4000-8000-000000000001"  # joins libvirt's hostdev uuid
    assert (vgpu.type_name, vgpu.sm_util, vgpu.fb_used_mib, vgpu.encoder_util) == ("NVIDIA A40-8Q", 55.0, 4200, 4.0)
    assert second.vgpus == ()
    assert fake.initialised == 0  # every init is paired with a shutdown


def test_missing_nvml_library_is_reported_not_faked():
    fake = FakeNVML(two_gpus(), init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    sample = NVMLTelemetry(fake).sample()
    assert sample.status == "NVML Shared Library Not Found"
    assert sample.gpus == ()


def test_real_pynvml_on_this_machine_reports_its_status():
    """Without an NVIDIA driver the real module says so; with one, it reads real boards."""
    sample = NVMLTelemetry().sample()
    if sample.status == "ok":
        assert all(g.pci_address and (g.uuid or g.error) for g in sample.gpus)
    else:
        assert sample.status == "NVML Shared Library Not Found" and sample.gpus == ()


def test_lost_gpu_is_flagged_and_the_others_still_read():
    sample = NVMLTelemetry(FakeNVML(two_gpus(), lost={0})).sample()
    lost, fine = sample.gpus
    assert lost.error == "GPU is lost" and lost.sm_util is None and lost.pci_address == "0000:41:00.0"
    assert fine.error == "" and fine.uuid == "GPU-bbbb"
    assert sample.status == "ok"


def test_board_without_vgpu_support_has_no_vgpus():
    sample = NVMLTelemetry(FakeNVML(two_gpus(), vgpu_unsupported={0})).sample()
    assert sample.gpus[0].vgpus == () and sample.gpus[0].sm_util == 63.0


def _lab_gpu(pci):
    return GPUDevice(
        nodedev_name="",
        pci_address=pci,
        vendor_id="0x10de",
        product_id="",
        product_name="GA102GL [A40]",
        mdev_types=(MdevType("nvidia-558", "NVIDIA A40-8Q", 6), MdevType("nvidia-563", "NVIDIA A40-48Q", 1)),
    )


def test_simulated_source_is_near_zero_when_idle_and_busy_when_a_desktop_runs():
    gpus = [_lab_gpu("0000:41:00.0"), _lab_gpu("0000:61:00.0"), _lab_gpu("0000:81:00.0")]
    mdevs = [Mdev("m-1", "nvidia-558", "0000:41:00.0", "desktop-1"), Mdev("m-2", "nvidia-558", "0000:61:00.0", "off")]
    domains = [
        DomainInfo("desktop-1", "u1", "running", 5900, ("m-1",)),
        DomainInfo("off", "u2", "shutoff", None, ("m-2",)),
        DomainInfo("whole", "u3", "running", 5901, passthrough_pci=("0000:81:00.0",)),
    ]
    for second in range(0, 40, 2):
        source = SimulatedTelemetry("lab-a40", clock=lambda s=second: 1_700_000_000 + s)
        busy, stopped, whole = source.sample(gpus, mdevs, domains).gpus
        assert 20 <= busy.vgpus[0].sm_util <= 75 and 2800 <= busy.vgpus[0].fb_used_mib <= 6600
        assert busy.sm_util > 2 and busy.fb_used_mib > 0
        assert stopped.vgpus[0].sm_util == 0 and stopped.sm_util < 3 and stopped.fb_used_mib == 64
        assert whole.sm_util >= 40 and whole.vgpus == ()
        assert busy.fb_total_mib == 49152


def test_simulated_figures_are_reproducible_and_idle_boards_read_near_zero():
    gpus = [_lab_gpu("0000:41:00.0")]
    a = SimulatedTelemetry("h", clock=lambda: 1000.0).sample(gpus, [], [])
    b = SimulatedTelemetry("h", clock=lambda: 1000.5).sample(gpus, [], [])
    assert a.gpus == b.gpus
    assert a.gpus[0].sm_util < 2 and a.gpus[0].fb_used_mib == 0 and a.gpus[0].power_w < 40


@pytest.mark.django_db
def test_telemetry_command_prints_the_hosts_source(lab, capsys):
    import json

    from django.core.management import call_command

    lab("lab-a40=A40x2")
    call_command("telemetry", "lab-a40")
    sample = json.loads(capsys.readouterr().out)
    assert sample["source"] == "simulated" and sample["status"] == "ok"
    assert [g["pci_address"] for g in sample["gpus"]] == ["0000:41:00.0", "0000:61:00.0"]
