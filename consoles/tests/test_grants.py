"""Grants to the console relay: signed, short-lived, for one host, used once."""

import time

import pytest

from consoles.grants import GrantRefused, NonceCache, sign_grant, verify_grant

KEY = b"k" * 32
HOSTS = {"lab-a40"}


def grant(**kwargs):
    values = {"host": "lab-a40", "domain": "desktop-7", "desktop_id": 7, "ttl_s": 30}
    values.update(kwargs)
    return sign_grant(KEY, **values)


def refused(token, *, key=KEY, hosts=HOSTS, now=None) -> str:
    with pytest.raises(GrantRefused) as caught:
        verify_grant(key, token, hosts=hosts, now=now)
    return caught.value.reason


def test_a_signed_grant_verifies_with_what_it_names():
    checked = verify_grant(KEY, grant(), hosts=HOSTS)
    assert (checked.host, checked.domain, checked.desktop_id) == ("lab-a40", "desktop-7", 7)
    assert len(checked.nonce) == 32 and checked.expires > time.time()


def test_each_grant_has_its_own_nonce():
    assert verify_grant(KEY, grant(), hosts=HOSTS).nonce != verify_grant(KEY, grant(), hosts=HOSTS).nonce


def test_a_grant_signed_with_another_key_is_refused():
    assert refused(sign_grant(b"other", host="lab-a40", domain="d", desktop_id=1)) == "grant refused: signature"


def test_a_tampered_grant_is_refused():
    body, mac = grant().split(".")
    forged = grant(domain="desktop-8").split(".")[0] + "." + mac
    assert refused(forged) == "grant refused: signature"
    assert refused(body + "." + "0" * 64) == "grant refused: signature"


@pytest.mark.parametrize("token", ["", "no-dot", "a.b.c", "x" * 5000, "!!!." + "0" * 64])
def test_malformed_grants_are_refused(token):
    assert refused(token) in ("grant refused: format", "grant refused: signature")


def test_an_expired_grant_is_refused():
    assert refused(grant(ttl_s=30), now=time.time() + 31) == "grant refused: expired"


def test_a_grant_for_a_host_this_relay_does_not_serve_is_refused():
    assert refused(grant(host="gpu-9")) == "this relay does not serve host gpu-9"


def test_a_grant_works_once_and_used_nonces_are_forgotten_when_they_expire():
    cache = NonceCache()
    first = verify_grant(KEY, grant(ttl_s=30), hosts=HOSTS)
    cache.use(first)
    with pytest.raises(GrantRefused, match="replayed"):
        cache.use(first)
    cache.use(verify_grant(KEY, grant(), hosts=HOSTS), now=time.time() + 60)
    assert first.nonce not in cache._seen
