"""Test helpers: a private Redis server the tests may stop and start, and pointing this process's
Celery app at another broker."""

from __future__ import annotations

import shutil
import subprocess
import time

import kombu.pools
import redis

from core.tests.http import free_port
from portal.celery import app


def use_broker(url: str) -> None:
    """Publish from this process to ``url`` from now on (a fresh connection pool)."""
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


class PrivateRedis:
    """A real redis-server on a free loopback port, without persistence (a restart forgets everything,
    as a Redis restart without AOF does), that a test can stop and start again on the same port."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> str:
        return "" if shutil.which("redis-server") else "redis-server is not installed"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
