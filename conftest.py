"""Shared fixtures: the four personas every API test checks isolation with, and API clients."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from allocations.tests.factories import make_membership, make_tenant, make_user
from tenancy.roles import Role


@pytest.fixture(autouse=True)
def _fast_settings(settings):
    from allocations.placement import fleet as placement

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    placement.use_fleet(None)  # each test's fleet (hosts, catalog, learned demand) starts from its own rows
    settings.PORTAL_PLACEMENT_SPREAD_TIES = False  # last ties by host name: the same choices in every run
    yield
    placement.use_fleet(None)


@pytest.fixture
def tenant(db):
    return make_tenant("Acme Research", "acme")


@pytest.fixture
def other_tenant(db):
    return make_tenant("Globex Design", "globex")


@pytest.fixture
def platform_admin(db):
    user = make_user("padmin")
    make_membership(user, Role.PLATFORM_ADMIN)
    return user


@pytest.fixture
def auditor(db):
    user = make_user("auditor")
    make_membership(user, Role.AUDITOR)
    return user


@pytest.fixture
def tenant_member(tenant):
    user = make_user("alice")
    make_membership(user, Role.TENANT_MEMBER, tenant)
    return user


@pytest.fixture
def outsider(other_tenant):
    """A tenant member of another tenant: must never see the first tenant's rows."""
    user = make_user("mallory")
    make_membership(user, Role.TENANT_MEMBER, other_tenant)
    return user


@pytest.fixture
def personas(platform_admin, auditor, tenant_member, outsider):
    return {
        "platform_admin": platform_admin,
        "auditor": auditor,
        "tenant_member": tenant_member,
        "outsider": outsider,
    }


@pytest.fixture
def api():
    """An API client; ``api.as_user(user)`` authenticates it with a token of that user's (one per user).

    The token is test setup, made as a row (no audit event, as other fixtures' rows), and counts as used
    just now, so a test's first call costs the queries every call costs (``tenancy.tokens``)."""
    from django.utils import timezone

    from tenancy.models import APIToken
    from tenancy.tokens import new_key

    client = APIClient()
    keys = {}

    def as_user(user):
        client.credentials()
        if user is not None:
            if user.pk not in keys:
                keys[user.pk], kept = new_key()
                APIToken.objects.create(user=user, name="tests", last_used_at=timezone.now(), **kept)
            client.credentials(HTTP_AUTHORIZATION=f"Token {keys[user.pk]}")
        return client

    client.as_user = as_user
    return client


LAB_CATALOG = """board,board_framebuffer_gib,profile,series,framebuffer_mib,max_per_gpu,mig_backed,source
A40,48,A40-4Q,Q,4096,12,no,test
A40,48,A40-8Q,Q,8192,6,no,test
A40,48,A40-24Q,Q,24576,2,no,test
A40,48,A40-48Q,Q,49152,1,no,test
A16,16,A16-2B,B,2048,8,no,test
A16,16,A16-16Q,Q,16384,1,no,test
L40S,48,L40S-48Q,Q,49152,1,no,test
"""


@pytest.fixture
def catalog(db, tmp_path):
    """A small vGPU catalog (A40, A16, L40S) loaded through the real loader."""
    from inventory.services.catalog import load_catalog

    path = tmp_path / "catalog.csv"
    path.write_text(LAB_CATALOG)
    load_catalog(path)


@pytest.fixture
def lab(catalog, tmp_path):
    """A test-driver lab: ``lab("lab-a40=A40x2")`` → a synced Host on libvirt's test driver."""
    from inventory.drivers.libvirt import forget_connection
    from inventory.services.lab import LabHostSpec, create_lab_host
    from inventory.services.sync import sync_host

    directory = tmp_path / "lab"
    made = []

    def build(spec: str = "lab-a40=A40x2", *, sync: bool = True):
        host = create_lab_host(LabHostSpec.parse(spec), directory=directory, flavour="test")
        made.append(host.libvirt_uri)
        if sync:
            sync_host(host)
            host.refresh_from_db()
        return host

    yield build
    for uri in made:
        forget_connection(uri)


@pytest.fixture
def run_tasks(django_capture_on_commit_callbacks, settings):
    """Run Celery tasks inline: on-commit enqueues execute at once (``with run_tasks(): ...``)."""
    from contextlib import contextmanager

    from portal.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True

    @contextmanager
    def runner():
        with django_capture_on_commit_callbacks(execute=True):
            yield

    yield runner
    app.conf.task_always_eager = False
