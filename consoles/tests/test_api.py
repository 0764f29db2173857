"""POST /api/desktops/<id>/console/: who gets a ticket, what it looks like, what is stored, and the
console figures on /metrics."""

import hashlib
import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from allocations.choices import DesktopStatus, EndReason
from allocations.services import lifecycle
from allocations.tests.factories import make_membership, make_user
from consoles.models import ConsoleSession, ConsoleTicket
from tenancy.roles import Role

pytestmark = pytest.mark.django_db


def url(desktop) -> str:
    return f"/api/desktops/{desktop.pk}/console/"


def token_of(response) -> str:
    return parse_qs(urlsplit(response.json()["ws_url"]).query)["ticket"][0]


def test_the_owner_gets_a_single_use_ticket_stored_only_as_its_hash(api, running_desktop, tenant_member, caplog):
    caplog.set_level(logging.DEBUG)
    before = timezone.now()
    response = api.as_user(tenant_member).post(url(running_desktop))
    assert response.status_code == 201, response.content
    body = response.json()
    ws = urlsplit(body["ws_url"])
    assert (ws.scheme, ws.netloc, ws.path) == ("ws", "testserver", "/ws/console/")
    token = token_of(response)
    assert len(token) >= 43  # token_urlsafe(32): 256 random bits
    expires = parse_datetime(body["expires_at"])
    assert before + timedelta(seconds=29) < expires <= timezone.now() + timedelta(seconds=30)
    ticket = ConsoleTicket.objects.get()
    assert ticket.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert (ticket.user, ticket.desktop_id, ticket.session_hash, ticket.used_at) == (
        tenant_member,
        running_desktop.pk,
        "",  # an API-token caller: bound to the user, no browser session
        None,
    )
    stored = list(ConsoleTicket.objects.values_list())
    assert token not in repr(stored)
    assert token not in caplog.text


def test_two_tickets_differ(api, running_desktop, tenant_member):
    client = api.as_user(tenant_member)
    assert token_of(client.post(url(running_desktop))) != token_of(client.post(url(running_desktop)))


def test_a_browser_session_ticket_is_bound_to_that_session(client, running_desktop, tenant_member):
    client.force_login(tenant_member)
    response = client.post(url(running_desktop))
    assert response.status_code == 201
    key = client.session.session_key
    assert ConsoleTicket.objects.get().session_hash == hashlib.sha256(key.encode()).hexdigest()


def test_a_platform_admin_may_open_any_console(api, running_desktop, platform_admin):
    assert api.as_user(platform_admin).post(url(running_desktop)).status_code == 201
    assert ConsoleTicket.objects.get().user == platform_admin


def test_auditors_other_members_and_other_tenants_get_404(api, running_desktop, tenant, auditor, outsider):
    colleague = make_user("bob")
    make_membership(colleague, Role.TENANT_MEMBER, tenant)
    for user in (auditor, outsider, colleague):
        response = api.as_user(user).post(url(running_desktop))
        assert response.status_code == 404, user
        assert response.json()["error"]["code"] == "not_found"
    assert api.as_user(auditor).post("/api/desktops/99999/console/").status_code == 404
    assert not ConsoleTicket.objects.exists()


def test_anonymous_gets_401(api, running_desktop):
    response = api.as_user(None).post(url(running_desktop))
    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401


def test_a_desktop_that_is_not_running_is_a_409(api, running_desktop, tenant_member):
    lifecycle.transition(running_desktop.pk, DesktopStatus.STOPPING, end_reason=EndReason.RELEASED)
    response = api.as_user(tenant_member).post(url(running_desktop))
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "The desktop is not running (status: stopping)."
    assert not ConsoleTicket.objects.exists()


def test_only_post(api, running_desktop, tenant_member):
    assert api.as_user(tenant_member).get(url(running_desktop)).status_code == 405


def test_metrics_count_open_consoles_and_bytes_relayed(client, running_desktop, tenant_member, auditor):
    now = timezone.now()
    ConsoleSession.objects.create(
        desktop=running_desktop, user=tenant_member, last_seen=now, bytes_to_guest=10, bytes_from_guest=1000
    )
    ConsoleSession.objects.create(  # its process died a while ago: not open
        desktop=running_desktop, user=tenant_member, last_seen=now - timedelta(minutes=5), bytes_to_guest=5
    )
    ConsoleSession.objects.create(
        desktop=running_desktop, user=tenant_member, last_seen=now, closed_at=now, bytes_from_guest=24
    )
    client.force_login(auditor)
    text = client.get("/metrics").content.decode()
    assert "portal_consoles_open 1" in text.splitlines()
    assert 'portal_console_bytes_total{direction="to_guest"} 15' in text
    assert 'portal_console_bytes_total{direction="from_guest"} 1024' in text


def test_an_owner_no_longer_in_the_tenant_gets_404(api, running_desktop, tenant_member, other_tenant):
    make_membership(tenant_member, Role.TENANT_MEMBER, other_tenant)  # still a member somewhere else
    tenant_member.memberships.filter(tenant=running_desktop.tenant).delete()
    assert api.as_user(tenant_member).post(url(running_desktop)).status_code == 404
