"""Filters must not reveal what the serializer hides (issue 15): a member could learn which host holds a
desktop (``?host=``) and which other tenants share a template (``?tenant=``) from what the lists returned."""

from __future__ import annotations

import json

import pytest

from allocations.tests.factories import make_template

pytestmark = pytest.mark.django_db


def _message(response) -> str:
    return json.loads(response.content)["error"]["message"]


def test_a_member_may_not_filter_desktops_by_host(api, tenant_member):
    """Regression: ``/api/desktops/?host=<name>`` answered a member with the desktops on that host."""
    response = api.as_user(tenant_member).get("/api/desktops/", {"host": "lab-a40"})
    assert response.status_code == 400
    assert "Only operators filter desktops by where they run (host)" in _message(response)


@pytest.mark.parametrize("persona", ["platform_admin", "auditor"])
def test_operators_filter_desktops_by_host(api, personas, persona):
    assert api.as_user(personas[persona]).get("/api/desktops/", {"host": "lab-a40"}).status_code == 200


def test_a_member_may_not_filter_templates_by_another_tenant(api, tenant, other_tenant, tenant_member):
    """Regression: ``/api/templates/?tenant=<other id>`` showed which of a member's templates another tenant
    is also offered (the serializer hides ``allowed_tenants`` from members)."""
    shared = make_template("Shared", tenants=[tenant, other_tenant])
    make_template("Ours only", tenants=[tenant])
    client = api.as_user(tenant_member)
    response = client.get("/api/templates/", {"tenant": other_tenant.pk})
    assert response.status_code == 400
    assert "your own tenants" in _message(response)
    response = client.get("/api/templates/", {"tenant": 10**6})  # a tenant that does not exist: the same answer
    assert response.status_code == 400
    own = client.get("/api/templates/", {"tenant": tenant.pk})
    assert own.status_code == 200
    assert {row["name"] for row in own.json()["results"]} == {"Shared", "Ours only"}
    assert shared.pk in {row["id"] for row in own.json()["results"]}


def test_an_admin_filters_templates_by_any_tenant(api, tenant, other_tenant, platform_admin):
    make_template("Shared", tenants=[tenant, other_tenant])
    make_template("Ours only", tenants=[tenant])
    response = api.as_user(platform_admin).get("/api/templates/", {"tenant": other_tenant.pk})
    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["Shared"]


def test_a_member_may_not_filter_the_allocations_export_by_host(api, tenant_member, platform_admin):
    """Regression: ``/api/exports/allocations/?host=<name>`` answered a member with their desktops on that
    host, although the export leaves the host column out for them."""
    response = api.as_user(tenant_member).get("/api/exports/allocations/", {"host": "lab-a40", "format": "csv"})
    assert response.status_code == 400
    assert "Only operators filter desktops by where they run (host)" in _message(response)
    admin = api.as_user(platform_admin).get("/api/exports/allocations/", {"host": "lab-a40", "format": "csv"})
    assert admin.status_code == 200
