"""Pushing events to browsers. ``publish`` is the only caller of ``group_send``.

Groups are named by what they scope: ``user.<id>`` (a person's own desktops),
``operators`` (platform admins and auditors: everything), ``host.<id>`` (one host's
utilization each round: joined by operators watching the host and by owners of desktops on it, whose
consumer passes on only their own vGPUs' figures). Services call
``publish_on_commit`` inside their transaction, so nothing is pushed for a
change that rolled back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)
OPERATORS = "operators"
#: Events whose payload the consumer reads (to join a new desktop's host; to pass on only the GPUs a
#: dashboard shows).
CONSUMER_READS = {"desktop.status", "fleet.utilization"}
#: Events the consumer turns into frames per person (a host's round: each owner gets only their vGPUs).
CONSUMER_FILTERS = {"host.utilization"}


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


HOST_GROUP_PREFIX = "host."


def host_group(host_id: int) -> str:
    return f"{HOST_GROUP_PREFIX}{host_id}"


def console_desktop_group(desktop_id: int) -> str:
    """The open consoles of one desktop (closed when it stops, taken over by a newer one)."""
    return f"console.desktop.{desktop_id}"


def console_user_group(user_id: int) -> str:
    """The open consoles of one person (closed when they sign out or lose the right)."""
    return f"console.user.{user_id}"


def message_for(type_: str, payload: dict) -> dict:
    """The channel-layer message for an event: the browser frame encoded once (``text``), plus the
    payload itself only for events the consumer reads; an event the consumer filters per person
    (``CONSUMER_FILTERS``) travels as its payload only."""
    if type_ in CONSUMER_FILTERS:
        return {"type": "live.event", "event": type_, "data": payload}
    message = {"type": "live.event", "event": type_, "text": json.dumps({"event": type_, "data": payload})}
    if type_ in CONSUMER_READS:
        message["data"] = payload
    return message


def publish(group: str, type_: str, payload: dict) -> None:
    """Send an event to a group. The browser frame is encoded once here, not once per consumer
    (``text``); ``data`` travels too only for events the consumer itself acts on. A broken channel
    layer must not fail the change that triggered the push: it is logged and dropped."""
    publish_many([group], type_, payload)


class _Sender:
    """One event loop per process, kept in a daemon thread, for publishing from sync code.

    ``async_to_sync`` runs each call in a fresh event loop, and a Redis channel layer keeps its
    connections per loop: every publish opened (and left) a new connection. Here every publish of a
    process goes through one loop, so the layer's pooled connection is reused. A forked child (a Celery
    prefork worker) starts its own."""

    def __init__(self):
        self.loop, self.pid, self.lock = None, None, threading.Lock()

    def run(self, coro_fn, timeout: float = 10.0):
        with self.lock:
            if self.loop is None or self.pid != os.getpid() or not self.loop.is_running():
                self.loop, self.pid = asyncio.new_event_loop(), os.getpid()
                threading.Thread(target=self.loop.run_forever, name="live-publish", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)


_sender = _Sender()


def _in_event_loop_thread() -> bool:
    """Whether sync code here runs under an event loop (a consumer's ``sync_to_async`` or the in-memory
    layer of the tests and ``runserver``): then ``async_to_sync`` reaches that loop, which is right."""
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return getattr(SyncToAsync.threadlocal, "main_event_loop", None) is not None


def publish_many(groups: list[str], type_: str, payload: dict) -> None:
    """The same event to several groups, encoded once and sent in one trip to the channel layer."""
    layer = get_channel_layer()
    if layer is None or not groups:
        return
    message = message_for(type_, payload)

    async def send_all():
        for group in groups:
            try:
                await layer.group_send(group, message)
            except Exception as exc:  # noqa: BLE001 - live updates are best effort; the database stays the truth
                log.warning("could not publish %s to %s: %s", type_, group, exc)

    try:
        if isinstance(layer, InMemoryChannelLayer) or _in_event_loop_thread():
            async_to_sync(send_all)()  # the in-memory layer's queues belong to the loop its consumers run in
        else:
            _sender.run(send_all)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not publish %s to %s: %s", type_, ", ".join(groups), exc)


def publish_on_commit(groups: list[str], type_: str, payload: dict) -> None:
    def send():
        publish_many(groups, type_, payload)

    transaction.on_commit(send)
