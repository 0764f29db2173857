"""The console websocket end to end in one process (WebsocketCommunicator, in-memory channel layer)
through the real relay process to a real TCP guest: tickets refused without a byte of the guest,
bytes both ways, one console per desktop, and each reason a console must end within a second."""

import asyncio
import time
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes the connections it opens
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from allocations.choices import DesktopStatus, EndReason
from allocations.models import Desktop
from allocations.services import lifecycle
from allocations.services.tenants import create_membership, delete_membership
from audit.models import AuditEvent
from consoles import consumers
from consoles.consumers import ConsoleConsumer, is_input
from consoles.models import ConsoleSession, ConsoleTicket
from consoles.services import issue_ticket
from consoles.tests.conftest import RFB_VERSION, free_port
from core.live import user_group
from inventory.models import Host
from portal.celery import app as celery_app
from tenancy.models import Membership
from tenancy.roles import Role

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
CLIENT = ["203.0.113.7", 50000]


@sync_to_async
def ticket(user, desktop, session_key=None) -> str:
    return issue_ticket(desktop.pk, actor=user, session_key=session_key).token


async def open_console(token, user, *, session_key=None):
    communicator = WebsocketCommunicator(ConsoleConsumer.as_asgi(), f"/ws/console/?ticket={token}")
    communicator.scope["user"] = user
    communicator.scope["session"] = SimpleNamespace(session_key=session_key)
    communicator.scope["client"] = CLIENT
    connected, _ = await communicator.connect(timeout=5)
    assert connected  # accepted, so that a refusal can say its code
    return communicator


async def closed_with(communicator, timeout=1.0) -> dict:
    """The next output must be the close (nothing of the guest before it), within ``timeout``."""
    message = await communicator.receive_output(timeout=timeout)
    assert message["type"] == "websocket.close", message
    await communicator.disconnect()  # the browser's side of the close; the consumer has put everything away
    return message


async def assert_refused(token, user, *, session_key=None, code=4401) -> dict:
    communicator = await open_console(token, user, session_key=session_key)
    message = await closed_with(communicator)
    assert message["code"] == code
    return message


async def opened(token, user, *, session_key=None):
    communicator = await open_console(token, user, session_key=session_key)
    assert await communicator.receive_from(timeout=3) == RFB_VERSION
    return communicator


async def test_a_ticket_opens_the_guests_screen_and_the_session_is_audited(console_desktop, tenant_member):
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    await console.send_to(bytes_data=b"RFB 003.008\n")
    assert await console.receive_from(timeout=2) == b"RFB 003.008\n"  # the guest echoes what it gets
    await console.disconnect()
    await asyncio.sleep(0.2)

    def check():
        session = ConsoleSession.objects.get()
        assert (session.user, session.desktop_id, session.source_ip) == (tenant_member, console_desktop.pk, CLIENT[0])
        assert (session.bytes_to_guest, session.bytes_from_guest, session.close_code) == (12, 24, 1000)
        assert session.closed_at is not None
        opened_event, closed_event = (
            AuditEvent.objects.about(console_desktop).filter(verb__startswith="console.").order_by("seq")
        )
        assert opened_event.verb == "console.opened" and closed_event.verb == "console.closed"
        assert opened_event.actor_username == "alice" and opened_event.source_ip == CLIENT[0]
        assert opened_event.after == {"source_ip": CLIENT[0], "by": "owner"}
        after = closed_event.after
        assert (after["bytes_to_guest"], after["bytes_from_guest"], after["code"]) == (12, 24, 1000)
        assert after["reason"] == "Closed in the browser." and after["duration_s"] >= 0

    await sync_to_async(check)()


async def test_a_platform_admin_opens_anyones_console_and_the_timeline_says_so(console_desktop, platform_admin):
    console = await opened(await ticket(platform_admin, console_desktop), platform_admin)
    await console.disconnect()
    event = await sync_to_async(AuditEvent.objects.about(console_desktop).get)(verb="console.opened")
    assert event.actor_username == "padmin" and event.after["by"] == "platform admin"


async def test_a_ticket_works_once(console_desktop, tenant_member):
    token = await ticket(tenant_member, console_desktop)
    (await opened(token, tenant_member)).scope  # noqa: B018
    message = await assert_refused(token, tenant_member)
    assert message["reason"] == "The console ticket is unknown, used or expired."


async def test_unknown_missing_and_expired_tickets_are_refused(console_desktop, tenant_member):
    await assert_refused("not-a-ticket", tenant_member)
    await assert_refused("", tenant_member)
    token = await ticket(tenant_member, console_desktop)

    def expire():
        ConsoleTicket.objects.update(expires_at=ConsoleTicket.objects.get().created_at)

    await sync_to_async(expire)()
    await assert_refused(token, tenant_member)


async def test_another_users_or_another_sessions_ticket_is_refused(console_desktop, tenant_member, platform_admin):
    await assert_refused(await ticket(tenant_member, console_desktop), platform_admin)
    message = await assert_refused(await ticket(tenant_member, console_desktop, "session-a"), tenant_member)
    assert message["reason"] == "The console ticket belongs to another session."
    await assert_refused(await ticket(tenant_member, console_desktop, "session-a"), tenant_member, session_key="b")
    console = await opened(
        await ticket(tenant_member, console_desktop, "session-a"), tenant_member, session_key="session-a"
    )
    await console.disconnect()


async def test_a_ticket_for_a_desktop_that_stopped_is_refused(console_desktop, tenant_member):
    token = await ticket(tenant_member, console_desktop)
    await sync_to_async(lifecycle.transition)(console_desktop.pk, DesktopStatus.STOPPING, end_reason=EndReason.RELEASED)
    message = await assert_refused(token, tenant_member)
    assert message["reason"] == "The desktop is not running (status: stopping)."


async def test_a_relay_that_is_down_says_console_unavailable_at_once(console_desktop, tenant_member):
    dead = f"127.0.0.1:{free_port()}"
    await sync_to_async(Host.objects.filter(pk=console_desktop.host_id).update)(console_relay=dead)
    started = time.monotonic()
    message = await assert_refused(await ticket(tenant_member, console_desktop), tenant_member, code=4503)
    assert message["reason"] == f"Console unavailable: the console relay at {dead} does not answer."
    assert time.monotonic() - started < 2


async def test_a_relay_refusal_is_shown_in_words(console_desktop, tenant_member):
    await sync_to_async(Desktop.objects.filter(pk=console_desktop.pk).update)(domain_name="desktop-404")
    message = await assert_refused(await ticket(tenant_member, console_desktop), tenant_member, code=4503)
    assert message["reason"] == "Console unavailable: desktop-404 is not running here."


async def test_a_newer_console_takes_over(console_desktop, tenant_member):
    first = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    second = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    message = await closed_with(first)
    assert (message["code"], message["reason"]) == (4001, "Opened in another window.")
    await second.send_to(bytes_data=b"x")
    assert await second.receive_from(timeout=2) == b"x"
    await second.disconnect()


@pytest.fixture
def eager_tasks():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


async def test_releasing_the_desktop_closes_its_console_within_a_second(console_desktop, tenant_member, eager_tasks):
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    started = time.monotonic()
    await sync_to_async(lifecycle.release_desktop)(console_desktop, actor=tenant_member)
    message = await closed_with(console)
    assert time.monotonic() - started < 1
    assert (message["code"], message["reason"]) == (4000, "The desktop was released.")
    await asyncio.sleep(0.2)
    session = await sync_to_async(ConsoleSession.objects.get)()
    assert (session.close_code, session.close_reason) == (4000, "The desktop was released.")


async def test_expiry_and_failure_close_the_console_with_the_reason(console_desktop, tenant_member, eager_tasks):
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    await sync_to_async(lifecycle.release_desktop)(
        console_desktop, actor=None, end_reason=EndReason.EXPIRED, reason="its time ran out"
    )
    assert (await closed_with(console))["reason"] == "The desktop expired."


async def test_a_failed_desktop_closes_its_console(console_desktop, tenant_member):
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    await sync_to_async(lifecycle.transition)(
        console_desktop.pk, DesktopStatus.FAILED, reason="its host lab-a40 is offline", end_reason=EndReason.HOST_LOST
    )
    message = await closed_with(console)
    assert (message["code"], message["reason"]) == (4000, "The desktop failed: its host lab-a40 is offline.")


async def test_signing_out_closes_the_persons_consoles(console_desktop, tenant_member):
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)

    def sign_out():
        browser = Client()
        browser.force_login(tenant_member)
        browser.post("/accounts/logout/")

    await sync_to_async(sign_out)()
    message = await closed_with(console)
    assert (message["code"], message["reason"]) == (4003, "You signed out.")


async def test_losing_the_membership_closes_the_console_and_a_new_role_does_not(
    console_desktop, tenant_member, platform_admin, other_tenant
):
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    await sync_to_async(create_membership)(
        {"user": tenant_member, "role": Role.TENANT_MEMBER, "tenant": other_tenant}, actor=platform_admin
    )
    await console.send_to(bytes_data=b"still here")
    assert await console.receive_from(timeout=2) == b"still here"  # re-checked, still allowed

    def remove():
        for membership in Membership.objects.filter(user=tenant_member):
            delete_membership(membership, actor=platform_admin)

    await sync_to_async(remove)()
    message = await closed_with(console)
    assert (message["code"], message["reason"]) == (4004, "You may no longer use this console.")


async def test_an_idle_console_is_warned_then_closed_and_the_desktop_keeps_running(
    console_desktop, tenant_member, settings, monkeypatch
):
    settings.PORTAL_CONSOLE_IDLE_MINUTES = 1.5 / 60  # 1.5 s
    settings.PORTAL_CONSOLE_IDLE_WARNING_S = 1
    monkeypatch.setattr(consumers, "TICK_S", 0.05)
    layer = get_channel_layer()
    watcher = await layer.new_channel()
    await layer.group_add(user_group(tenant_member.pk), watcher)
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    for _ in range(4):  # input keeps it open past the idle limit
        await asyncio.sleep(0.5)
        await console.send_to(bytes_data=b"\x04\x01\x00\x00\x00\x00\xff\x0d")  # a key event
        await console.receive_from(timeout=1)
    await console.send_to(bytes_data=b"\x03\x01\x00\x00\x00\x00\x04\x00\x03\x00")  # an update request is no input
    await console.receive_from(timeout=1)
    warning = await asyncio.wait_for(layer.receive(watcher), 2)
    assert warning["event"] == "console.idle_warning"
    assert f'"desktop": {console_desktop.pk}' in warning["text"] and "closes_at" in warning["text"]
    message = await closed_with(console, timeout=2)
    assert (message["code"], message["reason"]) == (4002, "Closed after 0.025 minutes without input.")
    desktop = await sync_to_async(Desktop.objects.get)(pk=console_desktop.pk)
    assert desktop.status == DesktopStatus.RUNNING


async def test_counters_and_last_seen_are_written_while_open(console_desktop, tenant_member, monkeypatch):
    monkeypatch.setattr(consumers, "TICK_S", 0.05)
    monkeypatch.setattr(consumers, "FLUSH_EVERY_S", 0.1)
    console = await opened(await ticket(tenant_member, console_desktop), tenant_member)
    await console.send_to(bytes_data=b"abc")
    await console.receive_from(timeout=1)
    await asyncio.sleep(0.4)
    session = await sync_to_async(ConsoleSession.objects.get)()
    assert session.closed_at is None
    assert (session.bytes_to_guest, session.bytes_from_guest) == (3, 15)
    assert session.last_seen > session.opened_at
    await console.disconnect()


async def test_the_wrong_origin_is_refused(console_desktop, tenant_member):
    from portal.asgi import application

    token = await ticket(tenant_member, console_desktop)
    communicator = WebsocketCommunicator(
        application, f"/ws/console/?ticket={token}", headers=[(b"origin", b"https://evil.example"), (b"host", b"x")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    assert (await sync_to_async(ConsoleTicket.objects.get)()).used_at is None  # never reached the consumer


async def test_only_frames_other_than_update_requests_count_as_input():
    assert is_input(b"\x04\x01\x00\x00\x00\x00\xff\x0d")  # key
    assert is_input(b"\x05\x00\x00\x10\x00\x10")  # pointer
    assert not is_input(b"\x03\x01\x00\x00\x00\x00\x04\x00\x03\x00")
    assert not is_input(b"\x03\x01\x00\x00\x00\x00\x04\x00\x03\x00" * 2)
    assert not is_input(b"")
