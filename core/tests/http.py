"""Servers the tests start: a free port on loopback for one, and waiting for it (Daphne) to answer /healthz."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_healthz(base_url: str, *, exited: Callable[[], bool], output: Callable[[], str], seconds: float = 60):
    """Return once ``base_url``/healthz answers 200; fail the test, with the end of the server's ``output``,
    when the process ``exited`` or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while True:
        if exited():
            pytest.fail(f"the server exited before answering:\n{output()[-4000:]}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not answer /healthz in {seconds:.0f} s:\n{output()[-4000:]}", pytrace=False)
        time.sleep(0.2)
