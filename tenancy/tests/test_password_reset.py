"""Issue 17: a local account's password is reset by mail (a real SMTP server, core.tests.mailserver) and
changed on /account/password/. Before, there was no reset at all ("an admin runs changepassword").

The reset never says whether an address is an account's, is limited per account and per address,
audited, and skips accounts of a directory or an identity provider (no usable password)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from allocations.tests.factories import make_user
from audit.models import AuditEvent
from core.tests.mailserver import SMTPServer

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"
NEW_PASSWORD = "a-new-Passphrase-17"
PUBLIC = "https://gpu.example.org/portal"
RESET_URL = "/account/password-reset/"


@pytest.fixture
def smtp(settings):
    settings.PORTAL_PUBLIC_URL = PUBLIC
    with SMTPServer() as server:
        server.use_in(settings)
        yield server


def _can_sign_in(username, password) -> bool:
    response = Client().post("/accounts/login/", {"username": username, "password": password})
    return response.status_code == 302


def _ask(client, email, address="10.1.1.1"):
    return client.post(RESET_URL, {"email": email}, REMOTE_ADDR=address)


def _link_of(message) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    links = [line.strip() for line in text.splitlines() if line.strip().startswith(PUBLIC)]
    assert len(links) == 1, text
    assert f'href="{links[0]}"' in html  # the same link in the HTML part
    return links[0]


def _outcomes():
    return list(
        AuditEvent.objects.filter(verb="auth.password_reset_requested")
        .order_by("seq")
        .values_list("object_repr", "after__outcome")
    )


def test_the_log_in_page_links_to_the_reset(client):
    page = client.get("/accounts/login/").content.decode()
    assert f'href="{RESET_URL}"' in page and "Forgot your password?" in page


def test_a_person_resets_their_password_by_mail_and_the_link_then_stops_working(client, smtp):
    """The whole flow: the mail's link (on the public address) opens the form, the new password signs in,
    the old one no longer does, sessions signed in with the old one end, and the link is refused after."""
    alice = make_user("alice", email="alice@example.org")
    elsewhere = Client()
    elsewhere.force_login(alice)

    response = _ask(client, "Alice@Example.org")
    assert response.status_code == 302 and response["Location"] == "/account/password-reset/sent/"
    [message] = smtp.wait_for(1)
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == "Reset your GPU Portal password"
    link = _link_of(message)
    assert link.startswith(f"{PUBLIC}/account/password-reset/")

    path = link.removeprefix(PUBLIC)
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200 and "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]  # Django moves the token into the session first
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/account/password-reset/done/"
    assert "Password set" in client.get(done["Location"]).content.decode()

    assert _can_sign_in("alice", NEW_PASSWORD)
    assert not _can_sign_in("alice", PASSWORD)
    assert elsewhere.get("/account/")["Location"].startswith("/accounts/login/")

    again = client.get(path, follow=True).content.decode()
    assert "This link no longer works" in again and "new_password1" not in again

    assert _outcomes() == [("alice", "mailed")]
    done_event = AuditEvent.objects.get(verb="auth.password_reset_done")
    assert done_event.object_id == str(alice.pk) and done_event.after == {"other_sessions_ended": 1}
    assert NEW_PASSWORD not in str(list(AuditEvent.objects.values("before", "after")))


def test_an_unknown_address_gets_the_same_page_and_no_mail(client, smtp):
    make_user("alice", email="alice@example.org")
    known = _ask(client, "alice@example.org")
    unknown = _ask(client, "nobody@example.org")
    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    smtp.wait_for(1)
    assert [m["To"] for m in smtp.inbox] == ["alice@example.org"]  # sent before the answer: none for nobody
    assert _outcomes() == [("alice", "mailed"), ("(no such account)", "no local account")]
    assert "nobody@example.org" not in str(list(AuditEvent.objects.values("after", "object_repr")))


def test_directory_accounts_without_a_local_password_get_no_mail(client, smtp):
    """People of a directory or an identity provider have no usable password: the reset is not for them,
    and the page says so in general words (nothing about this address)."""
    person = make_user("dir-user", email="dir@example.org", last_login=timezone.now())  # made at sign-in there
    person.set_unusable_password()
    person.save()
    response = _ask(client, "dir@example.org")
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "sign in through your organisation" in page
    assert smtp.inbox == []
    assert _outcomes() == [("(no such account)", "no local account")]


def test_mails_are_limited_per_account_and_requests_per_address(client, smtp, settings):
    settings.PORTAL_PASSWORD_RESET_ACCOUNT_LIMIT = 2
    settings.PORTAL_PASSWORD_RESET_ADDRESS_LIMIT = 5
    make_user("alice", email="alice@example.org")
    for n in range(3):  # from three addresses: the account's limit, not the address's
        assert _ask(client, "alice@example.org", address=f"10.0.0.{n}").status_code == 302
    smtp.wait_for(2)
    assert len(smtp.inbox) == 2  # the third was not sent, and the answer did not say so
    assert [outcome for _, outcome in _outcomes()] == ["mailed", "mailed", "not mailed: account limit"]

    for _ in range(5):
        assert _ask(client, "someone@example.org", address="10.9.9.9").status_code == 302
    refused = _ask(client, "alice@example.org", address="10.9.9.9")
    assert refused.status_code == 429
    assert "Too many password-reset requests" in refused.content.decode()
    assert _ask(client, "someone@example.org", address="10.9.9.10").status_code == 302  # another address


def test_a_mail_server_that_is_down_answers_the_same_and_is_audited(client, settings):
    with SMTPServer() as server:
        server.use_in(settings)
    make_user("alice", email="alice@example.org")  # the server is stopped: its port refuses
    response = _ask(client, "alice@example.org")
    assert response.status_code == 302 and response["Location"] == "/account/password-reset/sent/"
    assert _outcomes() == [("alice", "not mailed: ConnectionRefusedError")]


def test_a_signed_in_person_changes_their_password_and_their_other_sessions_end(client):
    alice = make_user("alice")
    other = Client()
    client.force_login(alice)
    other.force_login(alice)
    assert 'href="/account/password/"' in client.get("/account/").content.decode()

    wrong = client.post(
        "/account/password/", {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert wrong.status_code == 200 and "incorrectly" in wrong.content.decode()
    response = client.post(
        "/account/password/", {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/account/"
    page = client.get("/account/")
    assert page.status_code == 200 and "1 other session ended" in page.content.decode()
    assert other.get("/account/")["Location"].startswith("/accounts/login/")
    assert _can_sign_in("alice", NEW_PASSWORD)
    event = AuditEvent.objects.get(verb="auth.password_changed")
    assert event.object_id == str(alice.pk) and event.actor_id == alice.pk


def test_people_without_a_local_password_are_told_to_change_it_with_their_organisation(client):
    person = make_user("dir-user")
    person.set_unusable_password()
    person.save()
    client.force_login(person)
    page = client.get("/account/password/")
    assert page.status_code == 200 and "no password kept here" in page.content.decode()
    assert "change it</a>" not in client.get("/account/").content.decode()
    refused = client.post("/account/password/", {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert refused.status_code == 403


def test_someone_invited_whose_link_expired_sets_a_first_password_with_the_reset(client, smtp, platform_admin, tenant):
    """Review finding: the expired-invitation page says to use "Forgot your password?", but the reset
    mailed only accounts with a usable password, so an invited person (none yet) got nothing, ever."""
    from allocations.services import people
    from tenancy.roles import Role

    people.add_member("newhire@example.org", role=Role.TENANT_MEMBER, tenant=tenant, actor=platform_admin)
    smtp.inbox.clear()  # the invitation itself (whatever else the add mailed)

    assert _ask(client, "newhire@example.org").status_code == 302
    [message] = [m for m in smtp.wait_for(1) if m["Subject"] == "Reset your GPU Portal password"]
    form_page = client.get(_link_of(message).removeprefix(PUBLIC), follow=True)
    set_url = form_page.redirect_chain[-1][0]
    client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    newhire = AuditEvent.objects.get(verb="auth.password_reset_done").object_id
    from django.contrib.auth import get_user_model

    assert _can_sign_in(get_user_model().objects.get(pk=newhire).username, NEW_PASSWORD)
