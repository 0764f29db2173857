"""Issue 17, end to end in a real browser: "Forgot your password?" on the log-in page, the mail (a real
SMTP server, core.tests.mailserver) that the real ASGI server sends, its link on the public address, a
new password, and signing in with it; the link is refused afterwards.

The session's shared server has no mail server, so this module starts its own Daphne, pointed at one."""

from __future__ import annotations

import pytest

from allocations.tests.factories import make_user
from core.tests.mailserver import SMTPServer
from portal.tests.browser.conftest import ARTIFACTS, daphne_serving, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "Blue-Harbour-Lantern-17"


@pytest.fixture(scope="module")
def smtp():
    with SMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def mailing_server(server_env, static_root, smtp):
    """Daphne like ``asgi_server``, with mail going to ``smtp`` and its public address set."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **server_env,
        "STATIC_ROOT": str(static_root),
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": smtp.host,
        "EMAIL_PORT": str(smtp.port),
        "PORTAL_PUBLIC_URL": base_url,
    }
    with daphne_serving(env, ARTIFACTS / "daphne-password-reset.log", port=port) as served:
        yield served


def test_a_person_resets_a_forgotten_password_through_the_mail(mailing_server, smtp, page, login, screenshot):
    make_user("alice", email="alice@example.org")
    base = mailing_server
    page.goto(f"{base}/accounts/login/")
    page.click("text=Forgot your password?")
    assert page.url == f"{base}/account/password-reset/"
    page.fill("#id_email", "alice@example.org")
    screenshot(page, "password-reset-form")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == f"{base}/account/password-reset/sent/"
    assert page.locator("h1").inner_text() == "Check your mail"

    [message] = smtp.wait_for(1)
    text = message.get_body(preferencelist=("plain",)).get_content()
    [link] = [line.strip() for line in text.splitlines() if line.strip().startswith(f"{base}/")]
    page.goto(link)
    assert page.locator("h1").inner_text() == "Choose a new password"
    page.fill("#id_new_password1", NEW_PASSWORD)
    page.fill("#id_new_password2", NEW_PASSWORD)
    screenshot(page, "password-reset-confirm")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Password set"

    login(page, base, "alice", NEW_PASSWORD)
    assert page.url == f"{base}/"
    page.goto(link)
    assert page.locator("h1").inner_text() == "This link no longer works"
    screenshot(page, "password-reset-link-used")
