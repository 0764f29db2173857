"""Every list endpoint answers in a number of queries that does not grow with its rows: each is read
with a few rows and with four times as many, and both must cost the same (and stay small)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from allocations.choices import DesktopStatus
from allocations.models import Desktop, QuotaRequest
from allocations.tests.factories import make_membership, make_template, make_tenant, make_user
from audit import services as audit
from inventory.tests.factories import make_gpu, make_host, make_profile
from reports.models import ExportJob
from tenancy.roles import Role

ENDPOINTS = [
    "hosts",
    "gpus",
    "vgpu-profiles",
    "tenants",
    "quotas",
    "memberships",
    "templates",
    "desktops",
    "quota-requests",
    "audit-events",
    "export-jobs",
]
MOST_QUERIES = 8


def add_rows(start: int, count: int, *, admin, profile) -> None:
    """``count`` more rows of every kind the list endpoints show."""
    for i in range(start, start + count):
        tenant = make_tenant(f"Tenant {i}", f"tenant-{i}")
        user = make_user(f"member-{i}")
        make_membership(user, Role.TENANT_MEMBER, tenant)
        host = make_host(f"gpu-{i}")
        gpu = make_gpu(host, current_profile=profile, uuid=f"GPU-{i:08d}")
        make_profile(f"A16-{[1, 2, 4, 8, 16][i % 5]}{'QCB'[i // 5]}")
        template = make_template(f"T{i}", profile=profile, tenants=[tenant])
        desktop = Desktop.objects.create(
            name=f"d{i}",
            tenant=tenant,
            owner=user,
            template=template,
            profile=profile,
            vcpus=4,
            memory_mib=8192,
            framebuffer_mib=profile.framebuffer_mib,
            duration_hours=2,
            status=DesktopStatus.RUNNING,
            host=host,
        )
        desktop.gpus.set([gpu])
        QuotaRequest.objects.create(tenant=tenant, requested_by=user, max_desktops=9, reason="more")
        ExportJob.objects.create(
            requested_by_id=admin.pk, requested_by_username=admin.username, kind="allocations", fmt="csv"
        )
        with transaction.atomic():
            audit.record("thing.changed", actor=admin, object_type="test.thing", object_id=i)


def queries_for(client, endpoint: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/api/{endpoint}/", {"page_size": 500})
    assert response.status_code == 200, response.content[:300]
    return len(captured.captured_queries)


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_list_endpoint_costs_the_same_queries_for_3_rows_and_for_12(api, platform_admin, endpoint):
    profile = make_profile("A40-8Q")
    client = api.as_user(platform_admin)
    add_rows(0, 3, admin=platform_admin, profile=profile)
    few = queries_for(client, endpoint)
    add_rows(3, 9, admin=platform_admin, profile=profile)
    many = queries_for(client, endpoint)
    assert many == few, f"/api/{endpoint}/ took {few} queries for 3 rows of each kind and {many} for 12"
    assert many <= MOST_QUERIES
