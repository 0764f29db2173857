"""The whole OpenID Connect redirect flow in a real browser (headless Chromium, Playwright): the
portal's login page, "Sign in with Example IdP", the provider's own login form (a process of its own,
``oidc_provider/``), its automatic approval of the portal's client, and back in the portal, signed in
with the tenant membership the person's ``groups`` claim maps to.

The portal is pytest-django's ``live_server`` (a thread of this process, on the test database, so it
runs on SQLite too). Needs Debian's /usr/bin/chromium and playwright (``scripts/browser.sh``): missing,
the test skips, or fails where PORTAL_REQUIRE_BROWSER=1."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from identity.models import GroupMapping, Source
from identity.tests.servers import OIDC_PEOPLE
from tenancy.models import Membership
from tenancy.roles import Role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture
def chromium(monkeypatch):
    problem = ""
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing; scripts/browser.sh installs it"
    elif importlib.util.find_spec("playwright") is None:
        problem = "playwright is not installed; scripts/browser.sh"
    if problem:
        if os.environ.get("PORTAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PORTAL_REQUIRE_BROWSER=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in this thread: let the ORM run here beside it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


def test_browser_walks_the_oidc_redirect_flow_into_the_portal(live_server, oidc_portal, chromium, tenant):
    GroupMapping.objects.create(source=Source.OIDC, group="gpu-users", tenant=tenant, role=Role.TENANT_MEMBER)
    oidc_portal.allow_redirect(f"{live_server.url}/oidc/callback/")
    page = chromium.new_page()
    page.set_default_timeout(20_000)

    page.goto(f"{live_server.url}/")
    assert page.url.startswith(f"{live_server.url}/accounts/login/")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "oidc-login-page.png"), full_page=True)
    with page.expect_navigation():
        page.click("#oidc-sign-in")  # "Sign in with Example IdP"
    assert page.url.startswith(f"{oidc_portal.base_url}/accounts/login/"), page.url
    assert page.locator("h1").inner_text() == "Example IdP"

    page.fill("#idp-username", "dora")
    page.fill("#idp-password", OIDC_PEOPLE["dora"][0])
    with page.expect_navigation(url=f"{live_server.url}/", wait_until="load"):
        page.click("#idp-submit")  # -> authorize (approved: the institution's own client) -> callback -> home
    page.screenshot(path=str(ARTIFACTS / "oidc-signed-in.png"), full_page=True)

    assert page.locator("h1").first.inner_text() == "Welcome, dora"
    dora = get_user_model().objects.get(username="dora")
    membership = Membership.objects.get(user=dora)
    assert (membership.tenant, membership.role) == (tenant, Role.TENANT_MEMBER)
    assert page.locator("a[href='/desktops/new/']").count() >= 1  # a tenant member's "New desktop"
