"""A platform admin runs tenants, people and quotas from the portal's pages (issue 16), in a real browser
against the real server: create a tenant, add a member by email, edit the quota with its usage beside each
limit (an out-of-bounds value refused in words), deactivate a person (their browser is signed out)."""

import pytest
from django.contrib.auth import get_user_model

from allocations.models import Quota
from tenancy.models import Membership, Tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-1"


def test_admin_creates_a_tenant_adds_a_member_by_email_and_edits_its_quota(
    asgi_server, page, login, screenshot, platform_admin
):
    login(page, asgi_server, platform_admin.username, PASSWORD)
    page.goto(f"{asgi_server}/tenants/")
    with page.expect_navigation():
        page.click("a:has-text('New tenant')")
    page.fill("#id_name", "Initech")
    page.fill("#id_slug", "initech")
    page.fill("#id_max_desktops", "3")
    page.fill("#id_max_framebuffer_gib", "24")
    screenshot(page, "admin-tenant-new")
    with page.expect_navigation():
        page.click("button:has-text('Create tenant')")
    assert "Tenant Initech created" in page.locator(".messages").inner_text()

    page.fill("#add-member input[name=user]", "carol@example.org")
    with page.expect_navigation():
        page.click("#add-member button[type=submit]")
    messages = page.locator(".messages").inner_text()
    assert "carol is now tenant member of Initech" in messages and "manage.py changepassword carol" in messages
    assert "carol" in page.locator("#members").inner_text()
    screenshot(page, "admin-tenant-page")

    with page.expect_navigation():
        page.click("#quota a:has-text('Edit quota')")
    assert page.locator("[data-usage=max_desktops]").inner_text() == "0 of 3"
    page.fill("#id_max_desktops", "99999")
    page.click("button:has-text('Save quota')")  # the browser holds it back, in words (the form's max)
    assert "10000" in page.eval_on_selector("#id_max_desktops", "e => e.validationMessage")
    screenshot(page, "admin-quota-refused")
    page.eval_on_selector("#quota-form", "f => { f.noValidate = true; }")  # and the server refuses it too
    with page.expect_navigation():
        page.click("button:has-text('Save quota')")
    assert "less than or equal to 10000" in page.locator("#quota-form").inner_text()
    page.fill("#id_max_desktops", "5")
    with page.expect_navigation():
        page.click("button:has-text('Save quota')")
    assert "Initech's quota saved" in page.locator(".messages").inner_text()
    assert Quota.objects.get(tenant__slug="initech").max_desktops == 5
    assert Membership.objects.filter(tenant=Tenant.objects.get(slug="initech"), user__username="carol").exists()


def test_admin_deactivates_a_person_who_is_signed_out_at_once(
    asgi_server, browser, page, login, screenshot, platform_admin, tenant_member
):
    member_context = browser.new_context(viewport={"width": 390, "height": 800})  # a phone
    member = member_context.new_page()
    login(member, asgi_server, tenant_member.username, PASSWORD)

    login(page, asgi_server, platform_admin.username, PASSWORD)
    page.goto(f"{asgi_server}/people/")
    with page.expect_navigation():
        page.click("#people a:has-text('alice')")
    page.on("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("button:has-text('Deactivate')")
    assert "alice is deactivated" in page.locator(".messages").inner_text()
    assert page.locator("#person-state").inner_text() == "deactivated"
    screenshot(page, "admin-person-page")

    member.goto(f"{asgi_server}/")
    assert member.url.startswith(f"{asgi_server}/accounts/login/")
    member_context.close()
    assert not get_user_model().objects.get(pk=tenant_member.pk).is_active
