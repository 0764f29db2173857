"""Pushing events to browsers. ``publish`` is the only caller of ``group_send``.

Groups are named by what they scope: ``user.<id>`` (a person's own desktops),
``operators`` (platform admins and auditors: everything), ``vgpu.<mdev uuid>``
(one vGPU's utilization, joined by its desktop's owner). Services call
``publish_on_commit`` inside their transaction, so nothing is pushed for a
change that rolled back.
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)
OPERATORS = "operators"
#: Events whose payload the consumer reads (to subscribe to a new desktop's vGPU group).
CONSUMER_READS = {"desktop.status"}


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def vgpu_group(mdev_uuid: str) -> str:
    return f"vgpu.{mdev_uuid}"


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
    payload itself only for events the consumer reads."""
    message = {"type": "live.event", "event": type_, "text": json.dumps({"event": type_, "data": payload})}
    if type_ in CONSUMER_READS:
        message["data"] = payload
    return message


def publish(group: str, type_: str, payload: dict) -> None:
    """Send an event to a group. The browser frame is encoded once here, not once per consumer
    (``text``); ``data`` travels too only for events the consumer itself acts on. A broken channel
    layer must not fail the change that triggered the push: it is logged and dropped."""
    publish_many([group], type_, payload)


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
        async_to_sync(send_all)()
    except Exception as exc:  # noqa: BLE001
        log.warning("could not publish %s to %s: %s", type_, ", ".join(groups), exc)


def publish_on_commit(groups: list[str], type_: str, payload: dict) -> None:
    def send():
        publish_many(groups, type_, payload)

    transaction.on_commit(send)
