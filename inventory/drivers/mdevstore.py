"""The lab's record of mediated devices, for hosts that cannot create real ones.

libvirt's test driver cannot create mdevs, and the VM lab has no VFIO, so lab
hosts keep their vGPU instances here: a small JSON file beside the lab's XML,
locked with flock so the worker and management commands can share it. It
enforces what a real NVIDIA host enforces and the test driver does not:

- a GPU runs one vGPU type at a time (equal-size mode);
- no more instances of a type than the GPU offers;
- a mediated device is used by at most one domain.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from inventory.drivers.base import DriverError, GPUDevice, Mdev


class LabMdevStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    @contextmanager
    def _locked(self, write: bool):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            data = json.loads(self.path.read_text()) if self.path.exists() else {"mdevs": {}}
            yield data
            if write:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                os.replace(tmp, self.path)

    def list(self) -> list[Mdev]:
        with self._locked(write=False) as data:
            return [Mdev(uuid=u, **row) for u, row in sorted(data["mdevs"].items())]

    @staticmethod
    def available(gpu: GPUDevice, type_id: str, mdevs: Iterable[Mdev]) -> int:
        """Instances of ``type_id`` this GPU can still take, given the mdevs that exist."""
        offered = {t.type_id: t.available_instances for t in gpu.mdev_types}
        if type_id not in offered:
            return 0
        on_gpu = [m for m in mdevs if m.parent_pci == gpu.pci_address]
        if any(m.type_id != type_id for m in on_gpu):
            return 0
        return max(0, offered[type_id] - len(on_gpu))

    def create(self, gpu: GPUDevice, type_id: str, uuid: str) -> Mdev:
        with self._locked(write=True) as data:
            existing = [Mdev(uuid=u, **row) for u, row in data["mdevs"].items()]
            if uuid in data["mdevs"]:
                raise DriverError(f"mediated device {uuid} already exists", retryable=False)
            if type_id not in {t.type_id for t in gpu.mdev_types}:
                raise DriverError(f"GPU {gpu.pci_address} offers no vGPU type {type_id}", retryable=False)
            other = sorted({m.type_id for m in existing if m.parent_pci == gpu.pci_address} - {type_id})
            if other:
                names = {t.type_id: t.name for t in gpu.mdev_types}
                raise DriverError(
                    f"GPU {gpu.pci_address} already runs {names.get(other[0], other[0])} ({other[0]}); "
                    f"a GPU runs one vGPU type at a time",
                    retryable=False,
                )
            if self.available(gpu, type_id, existing) < 1:
                raise DriverError(f"GPU {gpu.pci_address} has no free {type_id} instance", retryable=False)
            data["mdevs"][uuid] = {"type_id": type_id, "parent_pci": gpu.pci_address, "domain": None}
        return Mdev(uuid=uuid, type_id=type_id, parent_pci=gpu.pci_address)

    def remove(self, uuid: str) -> None:
        """Remove an mdev; removing one that does not exist is a no-op (idempotent teardown)."""
        with self._locked(write=True) as data:
            row = data["mdevs"].get(uuid)
            if row is None:
                return
            if row["domain"]:
                raise DriverError(f"mediated device {uuid} is in use by domain {row['domain']}", retryable=False)
            del data["mdevs"][uuid]

    def attach(self, uuids: Iterable[str], domain: str) -> None:
        with self._locked(write=True) as data:
            for uuid in uuids:
                row = data["mdevs"].get(uuid)
                if row is None:
                    raise DriverError(f"mediated device {uuid} does not exist", retryable=False)
                if row["domain"] not in (None, domain):
                    raise DriverError(f"mediated device {uuid} is in use by domain {row['domain']}", retryable=False)
            for uuid in uuids:
                data["mdevs"][uuid]["domain"] = domain

    def detach(self, domain: str) -> None:
        with self._locked(write=True) as data:
            for row in data["mdevs"].values():
                if row["domain"] == domain:
                    row["domain"] = None
