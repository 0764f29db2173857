"""Plain factory functions (no extra dependency): each makes one valid row with sensible defaults."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from allocations.models import DesktopTemplate, Quota
from tenancy.models import Membership, Tenant


def make_user(username: str, password: str = "pw-for-tests-1", **fields):
    return get_user_model().objects.create_user(username=username, password=password, **fields)


def make_tenant(name: str, slug: str, **quota) -> Tenant:
    tenant = Tenant.objects.create(name=name, slug=slug)
    Quota.objects.create(tenant=tenant, **quota)
    return tenant


def make_membership(user, role, tenant=None) -> Membership:
    return Membership.objects.create(user=user, role=role, tenant=tenant)


def make_template(name: str, *, profile=None, tenants=(), **fields) -> DesktopTemplate:
    values = {"vcpus": 4, "memory_mib": 8192, "disk_image": "debian-12.qcow2"}
    values.update(fields)
    template = DesktopTemplate.objects.create(name=name, profile=profile, **values)
    template.allowed_tenants.set(tenants)
    return template
