"""A person's first minute, in a real browser against the real ASGI server: the login wall, signing
in, the home page, and the live websocket joining only the groups that person may see."""

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1"  # allocations/tests/factories.make_user

FIRST_MESSAGE_JS = """
(url) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  const timer = setTimeout(() => { ws.close(); reject(new Error("no message within 10 s")); }, 10000);
  ws.onmessage = (event) => { clearTimeout(timer); ws.close(); resolve(event.data); };
  ws.onclose = (event) => { clearTimeout(timer); reject(new Error(`closed with ${event.code}`)); };
})
"""


def test_member_signs_in_sees_home_and_joins_only_own_live_groups(asgi_server, page, login, screenshot, tenant_member):
    page.goto(f"{asgi_server}/")
    assert page.url.startswith(f"{asgi_server}/accounts/login/"), page.url
    assert page.locator("#id_username").is_visible()
    screenshot(page, "login")

    login(page, asgi_server, tenant_member.username, PASSWORD)
    assert page.url == f"{asgi_server}/"
    assert page.locator("h1").first.inner_text() == "Welcome, alice"
    screenshot(page, "home-member")

    ws_url = asgi_server.replace("http://", "ws://", 1) + "/ws/live/"
    hello = json.loads(page.evaluate(FIRST_MESSAGE_JS, ws_url))
    assert hello["event"] == "hello"
    assert f"user.{tenant_member.pk}" in hello["data"]["groups"]
    assert "operators" not in hello["data"]["groups"]
