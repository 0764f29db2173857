"""Fixtures of the notification tests: a real SMTP server (aiosmtpd, ``core.tests.mailserver``), desktops
as rows (moved through the real lifecycle service), and a person's live socket."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.tests.factories import make_membership, make_template, make_user
from core.tests.mailserver import SMTPServer
from inventory.tests.factories import make_host, make_profile
from tenancy.roles import Role

PUBLIC_URL = "https://gpu.example.edu/portal"


@pytest.fixture(autouse=True)
def _public_url(settings):
    settings.PORTAL_PUBLIC_URL = PUBLIC_URL
    settings.DEFAULT_FROM_EMAIL = "GPU Portal <portal@example.edu>"


@pytest.fixture
def smtp(settings):
    """A real SMTP server on loopback; Django's SMTP backend points at it."""
    with SMTPServer() as server:
        server.use_in(settings)
        yield server


@pytest.fixture
def eager(run_tasks):
    """Queued tasks (through the outbox, after commit) run inline, as a worker would run them."""
    return run_tasks


@pytest.fixture
def alice(tenant_member):
    tenant_member.email = "alice@example.edu"
    tenant_member.save()
    return tenant_member


@pytest.fixture
def bob(tenant):
    user = make_user("bob", email="bob@example.edu")
    make_membership(user, Role.TENANT_MEMBER, tenant)
    return user


@pytest.fixture
def admin(platform_admin):
    platform_admin.email = "padmin@example.edu"
    platform_admin.save()
    return platform_admin


@pytest.fixture
def host(db):
    return make_host("gpu-7")


@pytest.fixture
def make_desktop(tenant, host):
    """A desktop row of ``owner`` in ``status`` on host gpu-7 (holding no capacity: the lifecycle's own
    tests count that); its moves go through ``lifecycle.transition`` as the workers' do."""
    template = make_template("CAD", profile=make_profile("A40-8Q"), tenants=[tenant])

    def make(owner, status=DesktopStatus.RUNNING, name="cad-1", **fields):
        values = {
            "name": name,
            "tenant": tenant,
            "owner": owner,
            "template": template,
            "profile": template.profile,
            "vcpus": 4,
            "memory_mib": 8192,
            "framebuffer_mib": 8192,
            "duration_hours": 2,
            "status": status,
            "host": host,
            "holds_capacity": False,
            "expires_at": timezone.now() + timedelta(hours=2),
        }
        values.update(fields)
        return Desktop.objects.create(**values)

    return make
