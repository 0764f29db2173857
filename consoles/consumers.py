"""The console websocket, /ws/console/?ticket=…: binary frames carry the guest's RFB stream.

On connect the ticket is claimed (``services.claim_ticket``); a refusal closes with 4401 before a
single byte of the guest is sent. The console then goes through the relay beside the desktop's host
(``relay.open_relay``; 4503 when it is down or refuses) and bytes are piped both ways and counted.
It joins ``console.desktop.<id>`` (closed when the desktop stops; one console per desktop: a newer
one takes over, 4001) and ``console.user.<id>`` (sign-out 4003, re-check of the right 4004); no input
for PORTAL_CONSOLE_IDLE_MINUTES closes it (4002) after a warning to the person's live group.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from allocations.services.idle import note_console_input
from consoles import relay, services
from core import live

log = logging.getLogger(__name__)

#: How often the console looks at its idle clock, and how often it writes its counters down.
TICK_S = 1.0
FLUSH_EVERY_S = 10.0


class Close:
    """The close codes of a console and the words shown for them."""

    STOPPED = 4000
    TAKEN_OVER = 4001
    IDLE = 4002
    SIGNED_OUT = 4003
    NOT_ALLOWED = 4004
    TICKET_REFUSED = 4401
    HOST_LOST = 4500
    UNAVAILABLE = 4503


def is_input(frame: bytes) -> bool:
    """Does this client frame carry the person's input? RFB clients ask for screen updates on their
    own (FramebufferUpdateRequest: 10 bytes, message type 3, sent one per frame by noVNC); anything
    else (keys, pointer, clipboard, handshake) counts as input for the idle clock."""
    if not frame or len(frame) % 10:
        return bool(frame)
    return any(frame[i] != 3 for i in range(0, len(frame), 10))


class ConsoleConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.ending = self.cleaned = False
        self.session_id = None
        self.tasks: list[asyncio.Task] = []
        self.groups_joined: list[str] = []
        self.guest_writer = None
        self.bytes_to_guest = self.bytes_from_guest = 0
        self.close_code, self.close_reason = None, ""
        token = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("ticket", [""])[0]
        session_key = getattr(self.scope.get("session"), "session_key", None)
        try:
            target = await database_sync_to_async(services.claim_ticket)(
                token, user=self.scope.get("user"), session_key=session_key
            )
        except services.TicketRefused as exc:
            log.info("console refused from %s: %s", self.source_ip, exc.reason)
            await self._refuse(Close.TICKET_REFUSED, exc.reason)
            return
        try:
            guest_reader, self.guest_writer = await relay.open_relay(target.relay, target.grant)
        except relay.RelayUnavailable as exc:
            log.warning("console of desktop %s unavailable: %s", target.desktop.pk, exc)
            await self._refuse(Close.UNAVAILABLE, f"Console unavailable: {exc}.")
            return
        self.user, self.desktop = target.user, target.desktop
        await self.accept()
        session = await database_sync_to_async(services.open_session)(
            user=self.user, desktop=self.desktop, source_ip=self.source_ip
        )
        self.session_id = session.pk
        for group in (live.console_desktop_group(self.desktop.pk), live.console_user_group(self.user.pk)):
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        # Joined first, then announced: an older console of this desktop closes; this one ignores its own.
        await sync_to_async(live.publish)(
            live.console_desktop_group(self.desktop.pk),
            "console.takeover",
            {"channel": self.channel_name, "session": self.session_id},
        )
        loop = asyncio.get_running_loop()
        self.last_input = loop.time()
        self.warned = False
        self.input_unnoted = True  # opening it is input; noted on the desktop's idle clock at the next flush
        self.tasks = [asyncio.ensure_future(self._from_guest(guest_reader)), asyncio.ensure_future(self._tick())]
        log.info("console of desktop %s opened by %s from %s", self.desktop.pk, self.user, self.source_ip)

    @property
    def source_ip(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    async def _refuse(self, code: int, reason: str) -> None:
        """Accepted and closed at once, so the page learns the code (a rejected handshake says nothing);
        no byte of the guest has been sent."""
        self.ending = True
        await self.accept()
        await self.close(code=code, reason=reason)

    # --- the stream ----------------------------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        if self.ending or self.guest_writer is None or not bytes_data:
            return  # RFB is binary; text frames carry nothing for the guest
        if is_input(bytes_data):
            self.last_input = asyncio.get_running_loop().time()
            self.warned = False
            self.input_unnoted = True
        self.bytes_to_guest += len(bytes_data)
        try:
            self.guest_writer.write(bytes_data)
            await self.guest_writer.drain()
        except (ConnectionError, OSError):
            await self._end(Close.HOST_LOST, "The connection to the host was lost.")

    async def _from_guest(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(relay.CHUNK):
                self.bytes_from_guest += len(data)
                await self.send(bytes_data=data)
        except (ConnectionError, OSError):
            pass
        await self._end(Close.HOST_LOST, "The connection to the host was lost.")

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        idle_s = settings.PORTAL_CONSOLE_IDLE_MINUTES * 60
        warn_s = min(settings.PORTAL_CONSOLE_IDLE_WARNING_S, idle_s)
        flushed = loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            idle = now - self.last_input
            if idle >= idle_s:
                minutes = settings.PORTAL_CONSOLE_IDLE_MINUTES
                await self._end(Close.IDLE, f"Closed after {minutes:g} minutes without input.")
                return
            if idle >= idle_s - warn_s and not self.warned:
                self.warned = True
                closes_at = timezone.now() + timedelta(seconds=idle_s - idle)
                await sync_to_async(live.publish)(
                    live.user_group(self.user.pk),
                    "console.idle_warning",
                    {"desktop": self.desktop.pk, "closes_at": closes_at.isoformat()},
                )
            if now - flushed >= FLUSH_EVERY_S:
                flushed = now
                await database_sync_to_async(services.record_progress)(
                    self.session_id, bytes_to_guest=self.bytes_to_guest, bytes_from_guest=self.bytes_from_guest
                )
                if self.input_unnoted:  # issue 18: the desktop's idle clock (written at most once a minute)
                    self.input_unnoted = False
                    await database_sync_to_async(note_console_input)(self.desktop.pk)

    # --- events (core.live) --------------------------------------------------------------------------
    async def live_event(self, message):
        if self.ending:
            return
        event, data = message["event"], json.loads(message["text"]).get("data") or {}
        if event == "console.close":
            await self._end(int(data.get("code", Close.STOPPED)), str(data.get("reason", "")))
        elif event == "console.takeover":
            newer = data.get("session") is None or data["session"] > self.session_id
            if data.get("channel") != self.channel_name and newer:
                await self._end(Close.TAKEN_OVER, "Opened in another window.")
        elif event == "console.recheck":
            if not await database_sync_to_async(services.still_allowed)(self.user.pk, self.desktop.pk):
                await self._end(Close.NOT_ALLOWED, "You may no longer use this console.")

    # --- the end ---------------------------------------------------------------------------------------
    async def _end(self, code: int, reason: str) -> None:
        """Close from our side, once: the browser is told the code, then everything is put away."""
        if self.ending:
            return
        self.ending = True
        self.close_code, self.close_reason = code, reason
        log.info("console of desktop %s closed (%s): %s", self.desktop.pk, code, reason)
        await self.close(code=code, reason=reason)
        await self._cleanup()

    async def disconnect(self, code):
        if not self.ending:
            self.ending = True
            self.close_code = code
            self.close_reason = "Closed in the browser." if code in (1000, 1001) else "The browser's connection ended."
        await self._cleanup()

    async def _cleanup(self) -> None:
        if getattr(self, "cleaned", True):
            return
        self.cleaned = True
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        await relay.close_writer(self.guest_writer)
        if self.session_id is not None:
            try:
                await database_sync_to_async(services.close_session)(
                    self.session_id,
                    code=self.close_code,
                    reason=self.close_reason,
                    bytes_to_guest=self.bytes_to_guest,
                    bytes_from_guest=self.bytes_from_guest,
                )
            except Exception:  # noqa: BLE001 - the stream is gone either way; the row shows it stale (last_seen)
                log.exception("could not record the end of console session %s", self.session_id)
