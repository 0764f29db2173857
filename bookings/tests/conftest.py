"""A one-board fleet (one A40, whole-board profile: one desktop at a time) and a tenant that may book."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from allocations.tests.factories import make_template
from inventory.models import VGPUProfile

NOW = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)  # a Monday


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def board(lab, tenant):
    host = lab("lab-a40=A40x1")
    tenant.quota.max_desktops = 10
    tenant.quota.max_framebuffer_mib = 10**7
    tenant.quota.max_desktop_hours = 24
    tenant.quota.save()
    template = make_template(
        "Full A40", profile=VGPUProfile.objects.get(name="A40-48Q"), tenants=[tenant], vcpus=2, memory_mib=2048
    )
    return host, template
