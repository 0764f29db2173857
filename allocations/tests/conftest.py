"""Fixtures of the integration tier's worker tests (test_integration_worker.py, test_integration_outage.py)."""

import os
import uuid

import pytest
import redis
from django.conf import settings
from django.db import connection

from allocations.tests.factories import make_template
from inventory.models import Host, VGPUProfile
from inventory.services.connect import driver_for
from inventory.services.lab import LabHostSpec, create_lab_host
from inventory.services.sync import sync_host
from inventory.tests.test_vm_lab import ROOT, vm_lab_available


def require(condition_message: str):
    """Skip, or fail where CI says the VM lab must be there (PORTAL_REQUIRE_VM_LAB=1)."""
    if condition_message:
        if os.environ.get("PORTAL_REQUIRE_VM_LAB") == "1":
            pytest.fail(condition_message)
        pytest.skip(condition_message)


@pytest.fixture
def vm_host(catalog, tmp_path_factory):
    require("" if connection.vendor == "postgresql" else "the worker shares the database: needs PostgreSQL")
    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).ping()
    except redis.RedisError as exc:
        require(f"Redis at {settings.CELERY_BROKER_URL} does not answer: {exc}")
    require(vm_lab_available())
    lab_dir = ROOT / "var" / "itest" / uuid.uuid4().hex[:8]
    lab_dir.mkdir(parents=True)
    (lab_dir / "payload").symlink_to(ROOT / "var/lab/payload")
    host = create_lab_host(LabHostSpec.parse(f"itest-{lab_dir.name}=A40x1"), directory=lab_dir, flavour="vm")
    sync_host(host)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(host.queue)
    yield Host.objects.get(pk=host.pk)
    # only this host's domains: other hosts, runs and deployments share the daemon
    for domain in driver_for(host).list_domains():
        if domain.metadata.get("host") == host.name:
            driver_for(host).destroy_domain(domain.name)
            driver_for(host).undefine_domain(domain.name)


@pytest.fixture
def member_and_template(tenant, tenant_member):
    tenant.quota.max_desktops = 10
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    template = make_template(
        "CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant], vcpus=2, memory_mib=2048
    )
    return tenant_member, template
