"""Is a started guest up yet? The two ways a host can tell, each bounded by a time limit.

A VM-lab guest (busybox init) prints ``LAB-GUEST-READY`` on its serial console, which libvirt writes
to a per-domain file that each start of the domain's QEMU truncates: the banner in it belongs to this
boot. A real desktop image runs the qemu guest agent, which answers ``guest-ping`` once the guest OS
is up. Both raise ``DriverError`` (not retryable: waiting longer is the caller's choice) with the
reason in words when the guest stops or stays silent past the limit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import libvirt
import libvirt_qemu

from inventory.drivers.base import DriverError

LAB_READY_BANNER = b"LAB-GUEST-READY"
POLL_S = 0.25
AGENT_PING = json.dumps({"execute": "guest-ping"})
# Errors that say the agent can never answer this domain (no channel in its XML): no point waiting.
_AGENT_ABSENT = {
    getattr(libvirt, name)
    for name in ("VIR_ERR_ARGUMENT_UNSUPPORTED", "VIR_ERR_CONFIG_UNSUPPORTED", "VIR_ERR_NO_SUPPORT")
    if hasattr(libvirt, name)
}


def _stopped(name: str) -> DriverError:
    return DriverError(f"{name} stopped before its guest was ready", retryable=False)


def _not_up(name: str, timeout_s: float, detail: str) -> DriverError:
    return DriverError(f"the guest of {name} did not come up within {timeout_s:g} s", retryable=False, detail=detail)


def log_has_banner(path: Path, banner: bytes = LAB_READY_BANNER) -> bool:
    try:
        return banner in path.read_bytes()
    except FileNotFoundError:
        return False  # QEMU has not opened it yet
    except OSError as exc:
        raise DriverError(f"cannot read the serial log {path}", retryable=False, detail=str(exc)) from exc


def wait_for_banner(
    path: Path,
    *,
    name: str,
    timeout_s: float,
    is_running: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the lab guest's serial log holds the ready banner."""
    deadline = clock() + timeout_s
    while not log_has_banner(path):
        if not is_running():
            raise _stopped(name)
        if clock() >= deadline:
            raise _not_up(name, timeout_s, f"no {LAB_READY_BANNER.decode()} banner in its serial log {path}")
        sleep(POLL_S)


def wait_for_agent(
    domain: libvirt.virDomain,
    *,
    name: str,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the qemu guest agent inside the domain answers ``guest-ping``."""
    deadline = clock() + timeout_s
    while True:
        remaining = deadline - clock()
        try:
            libvirt_qemu.qemuAgentCommand(domain, AGENT_PING, max(1, min(5, int(remaining))), 0)
            return
        except libvirt.libvirtError as exc:
            message = exc.get_error_message() or str(exc)
            if exc.get_error_code() in _AGENT_ABSENT:
                raise DriverError(
                    f"{name} has no qemu guest agent channel to ask whether its guest is up",
                    retryable=False,
                    detail=message,
                ) from exc
        try:
            active = domain.isActive()
        except libvirt.libvirtError as exc:
            raise DriverError(
                f"cannot read the state of {name}", retryable=False, detail=exc.get_error_message()
            ) from exc
        if not active:
            raise _stopped(name)
        if clock() >= deadline:
            raise _not_up(
                name,
                timeout_s,
                f"its qemu guest agent does not answer ({message}); is qemu-guest-agent installed in the image?",
            )
        sleep(1.0)
