"""Guest readiness (inventory/drivers/guest.py): the lab's serial banner and the qemu guest agent,
each with a time limit, on a fake clock."""

import libvirt
import pytest

from inventory.drivers import guest
from inventory.drivers.base import DriverError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class AgentError(libvirt.libvirtError):
    def __init__(self, code, message):
        self.err = (code, libvirt.VIR_FROM_QEMU, message, 2, None, None, None, 0, 0)


class FakeDomain:
    def __init__(self, active=True):
        self.active = active

    def isActive(self):
        return self.active


def test_the_banner_wait_returns_once_the_serial_log_holds_it(tmp_path):
    log, clock = tmp_path / "desktop-1-serial.log", Clock()

    def sleep(seconds):
        clock.sleep(seconds)
        if clock.now >= 2:  # the guest's init gets there after 2 s; before that the file is missing
            log.write_bytes(b"booting\r\nLAB-GUEST-READY name=desktop-1 uptime=2.1\r\n")

    guest.wait_for_banner(log, name="desktop-1", timeout_s=60, is_running=lambda: True, clock=clock, sleep=sleep)
    assert 2 <= clock.now < 3


def test_a_silent_lab_guest_fails_in_words_at_the_time_limit(tmp_path):
    log, clock = tmp_path / "desktop-1-serial.log", Clock()
    log.write_bytes(b"Kernel panic - not syncing\r\n")
    with pytest.raises(DriverError) as caught:
        guest.wait_for_banner(
            log, name="desktop-1", timeout_s=30, is_running=lambda: True, clock=clock, sleep=clock.sleep
        )
    assert not caught.value.retryable
    assert caught.value.message == "the guest of desktop-1 did not come up within 30 s"
    assert "LAB-GUEST-READY" in caught.value.detail and clock.now == pytest.approx(30, abs=0.5)


def test_a_lab_guest_that_stops_fails_at_once(tmp_path):
    clock = Clock()
    with pytest.raises(DriverError, match="desktop-1 stopped before its guest was ready"):
        guest.wait_for_banner(
            tmp_path / "none.log",
            name="desktop-1",
            timeout_s=30,
            is_running=lambda: False,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now == 0


def test_the_agent_wait_pings_until_the_agent_answers(monkeypatch):
    clock, calls = Clock(), []

    def agent(domain, command, timeout, flags):
        calls.append((command, timeout))
        if len(calls) < 4:
            raise AgentError(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "QEMU guest agent is not connected")
        return '{"return": {}}'

    monkeypatch.setattr(guest.libvirt_qemu, "qemuAgentCommand", agent)
    guest.wait_for_agent(FakeDomain(), name="desktop-1", timeout_s=60, clock=clock, sleep=clock.sleep)
    assert len(calls) == 4 and calls[0] == ('{"execute": "guest-ping"}', 5)


def test_an_agent_that_never_answers_fails_in_words(monkeypatch):
    clock = Clock()

    def agent(domain, command, timeout, flags):
        raise AgentError(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "QEMU guest agent is not connected")

    monkeypatch.setattr(guest.libvirt_qemu, "qemuAgentCommand", agent)
    with pytest.raises(DriverError) as caught:
        guest.wait_for_agent(FakeDomain(), name="desktop-1", timeout_s=20, clock=clock, sleep=clock.sleep)
    assert caught.value.message == "the guest of desktop-1 did not come up within 20 s"
    assert "qemu-guest-agent installed" in caught.value.detail and not caught.value.retryable


@pytest.mark.parametrize(
    "domain,code,expected",
    [
        (FakeDomain(active=False), libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "stopped before its guest was ready"),
        (FakeDomain(), libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, "has no qemu guest agent channel"),
    ],
)
def test_a_stopped_domain_or_one_without_an_agent_fails_at_once(monkeypatch, domain, code, expected):
    clock = Clock()

    def agent(domain, command, timeout, flags):
        raise AgentError(code, "QEMU guest agent is not configured")

    monkeypatch.setattr(guest.libvirt_qemu, "qemuAgentCommand", agent)
    with pytest.raises(DriverError, match=expected):
        guest.wait_for_agent(domain, name="desktop-1", timeout_s=60, clock=clock, sleep=clock.sleep)
    assert clock.now == 0
