"""Signing in through a real OpenID Connect provider (``oidc_provider/``, django-oauth-toolkit, its
own process): the portal's side through Django's test client, the person's browser side (the
provider's login form) with ``requests``, following every redirect of the authorization code flow."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from identity.models import ExternalAccount, GroupMapping, MappedMembership, Source
from identity.tests.servers import OIDC_PEOPLE
from tenancy.models import Membership
from tenancy.roles import Role

pytestmark = pytest.mark.django_db


def walk_the_flow(client, provider, username: str, password: str, *, next_url: str = ""):
    """Login page -> "Sign in with ..." -> the provider's login form -> back to the portal's callback.
    Returns the portal's answer to the callback."""
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Example IdP" in page
    start = client.get("/oidc/authenticate/" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302 and start["Location"].startswith(provider.base_url + "/o/authorize/")

    browser = requests.Session()
    answer = browser.get(start["Location"], allow_redirects=True, timeout=10)  # -> the provider's login form
    assert "Sign in to Example IdP" in answer.text, answer.text[:500]
    form = {
        "username": username,
        "password": password,
        "csrfmiddlewaretoken": browser.cookies["provider_csrftoken"],
        "next": parse_qs(urlsplit(answer.url).query)["next"][0],  # back to the authorization, signed in
    }
    answer = browser.post(answer.url, data=form, allow_redirects=False, timeout=10)
    while answer.status_code == 302 and not answer.headers["Location"].startswith("http://testserver/"):
        location = answer.headers["Location"]
        url = location if location.startswith("http") else provider.base_url + location
        answer = browser.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:1000]
    callback = urlsplit(answer.headers["Location"])
    assert callback.path == "/oidc/callback/"
    return client.get(f"{callback.path}?{callback.query}")


@pytest.fixture
def oidc_mapping(tenant):
    return GroupMapping.objects.create(source=Source.OIDC, group="gpu-users", tenant=tenant, role=Role.TENANT_MEMBER)


def test_sign_in_through_the_provider_creates_the_account_with_the_mapped_membership(
    client, oidc_portal, oidc_mapping, tenant
):
    response = walk_the_flow(client, oidc_portal, "dora", OIDC_PEOPLE["dora"][0])

    assert response.status_code == 302 and response["Location"] == "/"
    dora = get_user_model().objects.get(username="dora")
    assert client.session["_auth_user_id"] == str(dora.pk)
    assert dora.email == "dora@idp.example.org" and not dora.has_usable_password()
    membership = Membership.objects.get(user=dora)
    assert (membership.tenant, membership.role) == (tenant, Role.TENANT_MEMBER)
    assert MappedMembership.objects.get(membership=membership).source == "oidc"
    assert ExternalAccount.objects.get(user=dora, source="oidc").groups == ["gpu-users"]
    granted = AuditEvent.objects.get(verb="identity.membership_granted")
    assert granted.actor_id is None and granted.after["source"] == "oidc"
    assert client.get("/").status_code == 200


def test_left_the_group_at_the_provider_loses_the_membership_at_next_sign_in(client, oidc_portal, oidc_mapping):
    assert walk_the_flow(client, oidc_portal, "dora", OIDC_PEOPLE["dora"][0]).status_code == 302
    oidc_portal.set_groups("dora", [])
    client.logout()
    try:
        assert walk_the_flow(client, oidc_portal, "dora", OIDC_PEOPLE["dora"][0]).status_code == 302
    finally:
        oidc_portal.set_groups("dora", OIDC_PEOPLE["dora"][1])

    dora = get_user_model().objects.get(username="dora")  # the same account: found by subject, not made again
    assert get_user_model().objects.filter(username__startswith="dora").count() == 1
    assert not Membership.objects.filter(user=dora).exists()
    assert AuditEvent.objects.get(verb="identity.membership_revoked").after["trigger"] == "sign-in"


def test_a_local_account_with_the_same_name_is_not_taken_over(client, oidc_portal, oidc_mapping):
    """The provider's username is a claim the provider may let people choose: a local "erin" stays
    hers, and the provider's erin gets an account of her own."""
    local = get_user_model().objects.create_user("erin", password="local-erin-pw")
    assert walk_the_flow(client, oidc_portal, "erin", OIDC_PEOPLE["erin"][0]).status_code == 302
    signed_in = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    assert signed_in != local and signed_in.username == "erin-2"


def test_provider_down_sends_back_to_the_login_page_with_a_message(client, oidc_portal, settings):
    settings.OIDC_OP_TOKEN_ENDPOINT = "http://127.0.0.1:9/o/token/"  # nothing listens there
    response = walk_the_flow(client, oidc_portal, "dora", OIDC_PEOPLE["dora"][0])

    assert response.status_code == 302 and response["Location"] == "/accounts/login/?sso=failed"
    assert "_auth_user_id" not in client.session
    page = client.get(response["Location"]).content.decode()
    assert "Signing in with Example IdP did not complete" in page


def test_login_page_has_no_provider_button_when_oidc_is_not_configured(client):
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with" not in page and 'id="id_password"' in page


def test_oidc_urls_answer_404_when_not_configured(client):
    """Not a 500 from mozilla-django-oidc's missing settings."""
    for url in ("/oidc/authenticate/", "/oidc/callback/?code=x&state=y"):
        assert client.get(url).status_code == 404
