"""The one websocket endpoint, /ws/live/. It only authenticates and subscribes: a person joins
their own group and their desktops' vGPU groups; platform admins and auditors join ``operators``.
Events themselves are published by services after commit (``core.live``).

It stays truthful about being live. Every HEARTBEAT_S it joins its groups again (a Redis restarted
without persistence forgets every subscription) and sends itself an echo through the channel layer;
an echo that does not come back within ECHO_TIMEOUT_S, or a layer that refuses, closes the socket with
4503 and the page shows "offline" and reconnects. A change of the person's access (membership or role,
however it is made: ``allocations.signals``) re-reads their subscriptions at once, so a revoked operator
stops receiving the operator feed within a second (4403 when no role is left)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from allocations.models import Desktop
from core.live import OPERATORS, host_group, user_group
from tenancy import sessions
from tenancy.roles import roles_of

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
ECHO_TIMEOUT_S = 5.0
#: How often an open socket checks that its sign-in session has not expired (tenancy.sessions).
SESSION_CHECK_S = 60.0


class Close:
    UNAUTHENTICATED = 4401
    NO_ROLE = 4403
    LAYER_LOST = 4503


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def __call__(self, scope, receive, send):
        """A channel layer whose server went away (a Redis restart) fails the consumer's receive loop:
        the socket is closed with 4503, so the page says offline and reconnects, instead of an error."""
        try:
            await super().__call__(scope, receive, send)
        except (redis.RedisError, OSError) as exc:
            log.warning("live socket: the channel layer failed (%s); closing it with 4503", exc)
            if getattr(self, "heartbeat", None) is not None:
                self.heartbeat.cancel()
            with contextlib.suppress(Exception):  # its pooled connections are dead too: start afresh
                await self.channel_layer.close_pools()
            await send({"type": "websocket.close", "code": Close.LAYER_LOST})

    async def connect(self):
        self.groups_joined: set[str] = set()
        self.watched_hosts: set[int] = set()  # host pages an operator has open (watch-host)
        self.my_mdevs: dict[str, int] = {}  # my desktops' vGPUs -> their host
        self.shown_gpus: set[int] | None = None  # the GPUs my dashboard shows (fleet-snapshot); None: all
        self.heartbeat: asyncio.Task | None = None
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or await self._session_expired():
            await self.close(code=Close.UNAUTHENTICATED)
            return
        self.user_id = user.pk
        roles, mdevs = await self._subscriptions()
        if not roles.names:
            await self.close(code=Close.NO_ROLE)
            return
        await self.accept()
        await self._join_allowed(roles, mdevs)
        await self.send_json({"event": "hello", "data": {"groups": sorted(self.groups_joined)}})
        self.echo_nonce = 0
        self.echoed = asyncio.Event()
        self.heartbeat = asyncio.ensure_future(self._heartbeat())

    @database_sync_to_async
    def _subscriptions(self):
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(pk=self.user_id, is_active=True).first()
        if user is None:
            return roles_of(None), {}
        roles = roles_of(user)
        mdevs = {
            str(uuid): host_id
            for uuid, host_id in Desktop.objects.filter(owner=user, mdev_uuid__isnull=False)
            .holding_capacity()
            .values_list("mdev_uuid", "host_id")
        }
        return roles, mdevs

    @database_sync_to_async
    def _host_of(self, mdev_uuid: str):
        mine = Desktop.objects.filter(owner_id=self.user_id, mdev_uuid=mdev_uuid)
        return mine.values_list("host_id", flat=True).first()

    @database_sync_to_async
    def _session_expired(self) -> bool:
        """Whether the sign-in session this socket came with is past its age or idle limit (a session
        cookie the HTTP middleware would end; API tokens have no session here and never expire this way)."""
        session = self.scope.get("session")
        if session is None or not getattr(session, "session_key", None):
            return False
        return sessions.expired(session, int(time.time()))

    @database_sync_to_async
    def _session_exists(self) -> bool:
        """Whether the sign-in session this socket was opened with still exists (none: it does not)."""
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        return bool(key) and session.exists(key)

    async def _join_allowed(self, roles, mdevs: dict) -> None:
        """Join what the person may see now and leave what they may no longer see. Utilization comes per
        host (``host.<id>``, one message a round): an owner joins the hosts of their desktops and is passed
        only their own vGPUs' figures (``_host_utilization``); an operator's watched hosts stay."""
        self.my_mdevs = dict(mdevs)
        if not roles.sees_everything:
            self.watched_hosts = set()
        allowed = {user_group(self.user_id)} | {host_group(h) for h in mdevs.values() if h is not None}
        if roles.sees_everything:
            allowed.add(OPERATORS)
            allowed |= {host_group(h) for h in self.watched_hosts}
        for group in sorted(self.groups_joined - allowed):
            await self.channel_layer.group_discard(group, self.channel_name)
            self.groups_joined.discard(group)
        for group in sorted(allowed):
            await self._join(group)

    async def _join(self, group: str):
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    # --- staying truthful -------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        checked = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if asyncio.get_running_loop().time() - checked >= SESSION_CHECK_S:
                checked = asyncio.get_running_loop().time()
                if await self._session_expired():  # a page left open past the session's limits stops too
                    await self.close(code=Close.UNAUTHENTICATED)
                    return
            self.echo_nonce += 1
            self.echoed.clear()
            try:
                for group in sorted(self.groups_joined):  # again: a restarted Redis forgot them
                    await self.channel_layer.group_add(group, self.channel_name)
                await self.channel_layer.send(self.channel_name, {"type": "live.echo", "nonce": self.echo_nonce})
                await asyncio.wait_for(self.echoed.wait(), ECHO_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any failure of the layer: this socket is no longer live
                log.warning("live socket of user %s: the channel layer is gone (%s); closing it", self.user_id, exc)
                await self.close(code=Close.LAYER_LOST)
                return

    async def live_echo(self, message):
        if message.get("nonce") == self.echo_nonce:
            self.echoed.set()

    async def disconnect(self, code):
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        for group in getattr(self, "groups_joined", ()):
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # noqa: BLE001 - a layer that is gone has forgotten it already
                pass

    # --- what the page sends --------------------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Only JSON objects mean something here; anything else is answered with an error event, and the
        socket stays open (it used to die with 1011 on ``[]`` or ``"x"``)."""
        try:
            content = json.loads(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self.send_json({"event": "error", "data": {"detail": "Expected a JSON object with a type."}})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"event": "pong", "data": {}})
        elif content.get("type") == "watch-host":
            # An operator's host page wants that host's per-sample utilization.
            if OPERATORS in self.groups_joined and str(content.get("host", "")).isdigit():
                self.watched_hosts.add(int(content["host"]))
                await self._join(host_group(int(content["host"])))
        elif content.get("type") == "fleet-snapshot":
            # An operator's dashboard asks once for the GPUs it shows; fleet.utilization then brings changes.
            ids = content.get("gpus")
            if OPERATORS in self.groups_joined and isinstance(ids, list):
                # From now on fleet.utilization brings this socket only these GPUs' changes: what a page of
                # the overview receives does not grow with the fleet (issue 19).
                self.shown_gpus = {int(i) for i in ids[:5000] if str(i).isdigit()}
                rows = await self._fleet_rows(sorted(self.shown_gpus))
                await self.send_json({"event": "fleet.utilization", "data": {"full": True, "gpus": rows}})

    @database_sync_to_async
    def _fleet_rows(self, ids):
        from inventory.services.utilization import fleet_rows

        return [row for row, _ in fleet_rows(gpu_ids=ids)]

    # --- events ---------------------------------------------------------------------------------------
    async def live_event(self, message):
        if message["event"] == "session.ended":  # issue 17: some of the person's sessions ended (tenancy.sessions)
            if not await self._session_exists():
                await self.close(code=Close.UNAUTHENTICATED)
            return
        if message["event"] == "access.changed":
            roles, mdevs = await self._subscriptions()
            if not roles.names:
                await self.close(code=Close.NO_ROLE)
                return
            await self._join_allowed(roles, mdevs)
            await self.send_json({"event": "hello", "data": {"groups": sorted(self.groups_joined)}})
            return
        data = message.get("data")
        if message["event"] == "host.utilization":
            await self._host_utilization(data)
            return
        if message["event"] == "fleet.utilization" and self.shown_gpus is not None:
            rows = [row for row in data.get("gpus", ()) if row[0] in self.shown_gpus]
            if rows:
                await self.send_json({"event": "fleet.utilization", "data": {**data, "gpus": rows}})
            return
        # A desktop of mine got its vGPU: start receiving that vGPU's utilization (through its host's group).
        mine = data and data.get("owner_id") == self.user_id
        if message["event"] == "desktop.status" and mine and data.get("mdev_uuid"):
            mdev = str(data["mdev_uuid"])
            if mdev not in self.my_mdevs:
                self.my_mdevs[mdev] = data.get("host_id") or await self._host_of(mdev)
                if self.my_mdevs[mdev] is not None:
                    await self._join(host_group(self.my_mdevs[mdev]))
        await self.send(text_data=message["text"])  # encoded once, by the publisher

    async def _host_utilization(self, data) -> None:
        """One host's round: the whole of it to an operator watching that host; to an owner, a
        ``vgpu.utilization`` frame for each of their own vGPUs in it, and nothing of anyone else's."""
        if data["host"] in self.watched_hosts and OPERATORS in self.groups_joined:
            await self.send_json({"event": "host.utilization", "data": data})
        for mdev, sm_util, fb_used_mib in data.get("vgpus", ()):
            if self.my_mdevs.get(mdev) == data["host"]:
                frame = {"mdev_uuid": mdev, "t": data["t"], "sm_util": sm_util, "fb_used_mib": fb_used_mib}
                await self.send_json({"event": "vgpu.utilization", "data": {**frame, "sampled_at": data["sampled_at"]}})
