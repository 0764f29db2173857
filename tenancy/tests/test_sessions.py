"""Issue 17: sessions end after PORTAL_SESSION_HOURS or PORTAL_SESSION_IDLE_MINUTES idle ("Your session
expired" on the log-in page), and "sign out everywhere" ends all of a person's sessions and closes their
consoles and live sockets, leaving their API tokens alone. Before, a session lasted Django's two weeks
whatever happened, and nothing could end a person's other sessions but deactivating them.

Time is moved by the sessions module's clock (``tenancy.sessions._now``), never slept."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from allocations.consumers import LiveConsumer
from allocations.services.people import set_user_active
from allocations.tests.factories import make_user
from audit.models import AuditEvent
from core import live
from tenancy import sessions

PASSWORD = "pw-for-tests-1"
START = 1_800_000_000


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self):
        return self.now

    def move(self, *, minutes=0, hours=0):
        self.now += minutes * 60 + hours * 3600


@pytest.fixture
def clock(monkeypatch, settings):
    settings.SESSION_COOKIE_AGE = 12 * 3600
    settings.PORTAL_SESSION_IDLE_MINUTES = 120
    moved = Clock()
    monkeypatch.setattr(sessions, "_now", moved)
    return moved


def _signed_in(username="alice"):
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def _goes_to_login(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_an_idle_session_expires_and_the_log_in_page_says_so(clock, tenant_member):
    client = _signed_in()
    clock.move(minutes=119)
    assert client.get("/account/").status_code == 200  # used: the idle clock starts again
    clock.move(minutes=119)
    assert client.get("/account/").status_code == 200
    clock.move(minutes=120)
    expired = client.get("/account/?tab=1")
    assert _goes_to_login(expired) and expired["Location"].endswith("?next=/account/%3Ftab%3D1")
    assert "Your session expired" in client.get(expired["Location"]).content.decode()
    assert _goes_to_login(client.get("/account/"))  # and it stays ended, time moved or not
    assert AuditEvent.objects.filter(verb="auth.session_expired", actor_id=tenant_member.pk).count() == 1


@pytest.mark.django_db
def test_a_busy_session_still_ends_after_its_hours(clock, tenant_member):
    client = _signed_in()
    for _ in range(23):
        clock.move(minutes=30)
        assert client.get("/account/").status_code == 200
    clock.move(minutes=30)  # 12 hours after signing in
    assert _goes_to_login(client.get("/account/"))
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302  # signing in again starts afresh
    assert client.get("/account/").status_code == 200


@pytest.mark.django_db
def test_the_last_seen_time_is_written_at_most_once_a_minute(clock, tenant_member):
    client = _signed_in()
    clock.move(minutes=5)
    client.get("/account/")
    assert client.session[sessions.LAST_SEEN] == clock.now
    seen = clock.now
    clock.now += 59
    client.get("/account/")
    assert client.session[sessions.LAST_SEEN] == seen
    clock.now += 1
    client.get("/account/")
    assert client.session[sessions.LAST_SEEN] == clock.now


@pytest.mark.django_db
def test_an_expired_session_on_the_api_is_unauthenticated_not_redirected(clock, tenant_member):
    client = _signed_in()
    assert client.get("/api/me/").status_code == 200
    clock.move(hours=3)
    response = client.get("/api/me/")
    assert response.status_code in (401, 403) and response["Content-Type"].startswith("application/json")


@pytest.mark.django_db
def test_sign_out_everywhere_ends_every_session_but_keeps_api_tokens(clock, tenant_member, api):
    here, there = _signed_in(), _signed_in()
    bob = make_user("bob")
    bobs = Client()
    bobs.force_login(bob)
    page = here.get("/account/").content.decode()
    assert "Sign out everywhere" in page and 'href="/account/tokens/"' in page

    response = here.post("/account/sign-out-everywhere/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "You are signed out everywhere (2 sessions ended)" in here.get(response["Location"]).content.decode()
    assert _goes_to_login(there.get("/account/"))
    assert _goes_to_login(here.get("/account/"))
    assert bobs.get("/account/").status_code == 200  # another person's session is not touched
    assert api.as_user(tenant_member).get("/api/me/").status_code == 200  # tokens keep working
    event = AuditEvent.objects.get(verb="auth.signed_out_everywhere")
    assert (event.actor_id, event.object_id, event.after) == (
        tenant_member.pk,
        str(tenant_member.pk),
        {"sessions_ended": 2},
    )
    assert here.get("/account/sign-out-everywhere/").status_code in (302, 405)


async def _closed(communicator, timeout=2.0) -> dict:
    """The socket's close, past any frames sent before it (a password change re-sends "hello")."""
    while (output := await communicator.receive_output(timeout=timeout))["type"] != "websocket.close":
        pass
    return output


async def _live_socket(user, session_key):
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    communicator.scope["session"] = SessionStore(session_key=session_key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["event"] == "hello"
    return communicator


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_sign_out_everywhere_closes_the_persons_live_sockets_and_consoles(tenant_member, outsider):
    here = await sync_to_async(_signed_in)()
    there = await sync_to_async(_signed_in)()
    theirs = await sync_to_async(_signed_in)("mallory")
    mine = await _live_socket(tenant_member, there.session.session_key)
    other = await _live_socket(outsider, theirs.session.session_key)
    layer = get_channel_layer()
    console = await layer.new_channel()  # stands for an open console of alice's
    await layer.group_add(live.console_user_group(tenant_member.pk), console)

    response = await sync_to_async(here.post)("/account/sign-out-everywhere/")
    assert response.status_code == 302

    assert await _closed(mine) == {"type": "websocket.close", "code": 4401}
    closing = await layer.receive(console)
    assert closing["event"] == "console.close" and '"code": 4003' in closing["text"]
    assert await other.receive_nothing(timeout=0.3)  # mallory's socket stays open
    await other.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_password_change_closes_only_the_sockets_of_the_other_sessions(tenant_member):
    here = await sync_to_async(_signed_in)()
    there = await sync_to_async(_signed_in)()
    elsewhere = await _live_socket(tenant_member, there.session.session_key)
    new = "a-new-Passphrase-17"
    response = await sync_to_async(here.post)(
        "/account/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302
    still = await _live_socket(tenant_member, here.session.session_key)  # this browser's new session
    assert await _closed(elsewhere) == {"type": "websocket.close", "code": 4401}
    await sync_to_async(sessions.close_connections)(tenant_member.pk, "test")  # this session still exists
    frames = []
    while not await still.receive_nothing(timeout=0.3):
        frames.append(await still.receive_output())
    assert all(frame["type"] == "websocket.send" for frame in frames)  # never closed
    await still.disconnect()


@pytest.mark.django_db
def test_deactivating_a_person_still_ends_their_sessions(platform_admin, tenant_member):
    """people.end_sessions moved to tenancy.sessions (one rule for both): deactivation still uses it."""
    client = _signed_in()
    set_user_active(tenant_member, False, actor=platform_admin)
    assert _goes_to_login(client.get("/account/"))
