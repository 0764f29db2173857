"""The one websocket endpoint, /ws/live/. It only authenticates and subscribes: a person joins
their own group and their desktops' vGPU groups; platform admins and auditors join ``operators``.
Events themselves are published by services after commit (``core.live``)."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from allocations.models import Desktop
from core.live import OPERATORS, host_group, user_group, vgpu_group
from tenancy.roles import roles_of


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.groups_joined: set[str] = set()
        roles, mdevs = await self._subscriptions(user)
        if not roles.names:
            await self.close(code=4403)
            return
        await self.accept()
        await self._join(user_group(user.pk))
        if roles.sees_everything:
            await self._join(OPERATORS)
        for mdev in mdevs:
            await self._join(vgpu_group(mdev))
        await self.send_json({"event": "hello", "data": {"groups": sorted(self.groups_joined)}})

    @database_sync_to_async
    def _subscriptions(self, user):
        roles = roles_of(user)
        mdevs = [
            str(uuid)
            for uuid in Desktop.objects.filter(owner=user, mdev_uuid__isnull=False)
            .holding_capacity()
            .values_list("mdev_uuid", flat=True)
        ]
        return roles, mdevs

    async def _join(self, group: str):
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"event": "pong", "data": {}})
        elif content.get("type") == "watch-host":
            # An operator's host page wants that host's per-sample utilization.
            if OPERATORS in self.groups_joined and str(content.get("host", "")).isdigit():
                await self._join(host_group(int(content["host"])))

    async def live_event(self, message):
        data = message.get("data")
        # A desktop of mine got its vGPU: start receiving that vGPU's utilization.
        mine = data and data.get("owner_id") == self.scope["user"].pk
        if message["event"] == "desktop.status" and mine and data.get("mdev_uuid"):
            await self._join(vgpu_group(data["mdev_uuid"]))
        await self.send(text_data=message["text"])  # encoded once, by the publisher
