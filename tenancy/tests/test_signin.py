"""Sign-in throttling (django-axes, tenancy.signin) and the audit of sign-ins, failures and lockouts.

Issue 15: 100 wrong passwords on /api/auth/token/ and /accounts/login/ were all processed and nothing
was audited. Now, after the limit, attempts are refused (429, in words) without any password being
checked, per account and per address, until the cool-off has passed."""

from __future__ import annotations

import datetime
import json

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.hashers import MD5PasswordHasher

from allocations.tests.factories import make_user
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"
TOKEN_URL = "/api/auth/token/"
LOGIN_URL = "/accounts/login/"


class CountingHasher(MD5PasswordHasher):
    """The test hasher, counting how many passwords it was asked to check."""

    algorithm = "counting_md5"
    checked = 0

    def verify(self, password, encoded):
        type(self).checked += 1
        return super().verify(password, encoded)


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    CountingHasher.checked = 0
    return CountingHasher


def _token(client, username, password, address="10.0.0.1"):
    return client.post(TOKEN_URL, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_a_hundred_wrong_passwords_on_the_token_endpoint_stop_being_checked_after_five(client, counting_hasher):
    """Issue 15: all 100 were processed. Now 4 are answered 400, the 5th starts the lockout, and the other
    95 are refused with 429 and words, the password hasher never asked again."""
    make_user("alice")
    statuses = [_token(client, "alice", f"guess-{n}").status_code for n in range(100)]
    assert statuses[:4] == [400] * 4
    assert statuses[4:] == [429] * 96
    assert counting_hasher.checked == 5

    refused = _token(client, "alice", PASSWORD)  # the right password, during the cool-off
    assert refused.status_code == 429
    assert counting_hasher.checked == 5
    error = refused.json()["error"]
    assert error["status"] == 429 and error["code"] == "locked_out"
    assert "Too many failed sign-ins" in error["message"] and "Try again in 15 minutes" in error["message"]
    assert refused["Retry-After"] == "900"
    assert "token" not in refused.json()


def test_the_login_form_is_throttled_too_and_answers_with_a_page(client, counting_hasher):
    make_user("alice")
    for n in range(4):
        assert client.post(LOGIN_URL, {"username": "alice", "password": f"guess-{n}"}).status_code == 200
    for n in range(96):
        response = client.post(LOGIN_URL, {"username": "alice", "password": f"guess-{n}"})
        assert response.status_code == 429
    assert counting_hasher.checked == 5
    response = client.post(LOGIN_URL, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    page = response.content.decode()
    assert "Signing in is paused" in page and "GPU Portal" in page and "Try again in 15 minutes" in page
    assert "_auth_user_id" not in client.session


def test_an_address_is_locked_out_whichever_accounts_it_tries(client, settings):
    """Per address: accounts guessed from one address lock that address at its own limit, not the
    accounts."""
    settings.PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT = 8
    names = [f"u{n}" for n in range(9)]
    for name in names:
        make_user(name)
    for name in names[:8]:
        assert _token(client, name, "wrong", address="10.0.0.9").status_code == 400
    refused = _token(client, names[8], PASSWORD, address="10.0.0.9")
    assert refused.status_code == 429 and "from this address" in refused.json()["error"]["message"]
    assert _token(client, names[0], PASSWORD, address="10.0.0.10").status_code == 200


def test_one_persons_lockout_does_not_lock_out_others_at_the_same_address(client):
    """Regression (found using make run): five wrong passwords for bob from 127.0.0.1 locked out every
    account signing in from 127.0.0.1 (the auditor and the admin too), as they would everyone behind a
    campus NAT or a proxy. The account is locked; the address is not, below its own limit."""
    make_user("bob")
    make_user("auditor")
    for _ in range(6):
        _token(client, "bob", "wrong", address="10.0.0.7")
    assert _token(client, "bob", PASSWORD, address="10.0.0.7").status_code == 429
    assert _token(client, "auditor", PASSWORD, address="10.0.0.7").status_code == 200


def test_an_account_is_locked_out_from_every_address(client):
    """Per account: five guesses from five addresses lock the account; others still sign in from there."""
    make_user("alice")
    make_user("bob")
    for n in range(5):
        _token(client, "alice", "wrong", address=f"10.0.1.{n}")
    assert _token(client, "alice", PASSWORD, address="10.0.2.1").status_code == 429
    assert _token(client, "bob", PASSWORD, address="10.0.1.0").status_code == 200


def test_the_right_password_works_again_once_the_cool_off_has_passed(client):
    make_user("alice")
    for _ in range(5):
        _token(client, "alice", "wrong")
    assert _token(client, "alice", PASSWORD).status_code == 429
    # Fifteen minutes and a moment later (the attempts' own clock, in the database).
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=15, seconds=5)
    AccessAttempt.objects.update(attempt_time=past)
    response = _token(client, "alice", PASSWORD)
    assert response.status_code == 200 and response.json()["token"]
    assert not AccessAttempt.objects.exists()  # a success clears the count


def test_sign_ins_failures_and_the_lockout_are_audited_without_the_password(client):
    """Issue 15: logins were not audited. Each failure is an event until the lockout, which is one
    event however many refusals follow; a success is an event naming the person."""
    alice = make_user("alice")
    client.post(LOGIN_URL, {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.0.0.7")
    signed_in = AuditEvent.objects.get(verb="auth.signed_in")
    assert (signed_in.actor_id, signed_in.object_id, signed_in.source_ip) == (alice.pk, str(alice.pk), "10.0.0.7")

    secret_guesses = [f"s3cret-guess-{n}" for n in range(30)]
    for guess in secret_guesses:
        _token(client, "alice", guess, address="10.0.0.8")
    failed = AuditEvent.objects.filter(verb="auth.sign_in_failed")
    assert failed.count() == 5
    assert {e.object_id for e in failed} == {str(alice.pk)} and {e.actor_id for e in failed} == {None}
    lockout = AuditEvent.objects.get(verb="auth.locked_out")
    assert lockout.object_repr == "alice" and lockout.source_ip == "10.0.0.8"
    assert lockout.after["failures"] == 5 and lockout.after["cool_off_minutes"] == 15

    everything = json.dumps([[e.object_repr, e.before, e.after] for e in AuditEvent.objects.all()])
    assert not any(guess in everything for guess in secret_guesses)
    assert PASSWORD not in everything


def test_a_name_that_is_no_account_is_not_kept(client):
    """People type their password into the name field: an unknown name is not written to the trail."""
    _token(client, "correct-horse-battery", "x")
    event = AuditEvent.objects.get(verb="auth.sign_in_failed")
    assert event.object_id == "" and event.object_repr == "(no such account)"
    assert "correct-horse-battery" not in json.dumps([event.before, event.after])
