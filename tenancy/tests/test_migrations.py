"""Moving Tenant and Membership into tenancy (and ExportJob into reports) keeps every row: a database
filled in the old layout is migrated forward and read through the new models, and back again."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from allocations.models import DesktopTemplate, Quota
from reports.models import ExportJob
from tenancy.models import Membership, Tenant

OLD_LAYOUT = [
    ("allocations", "0004_quota_usage_counters"),
    ("audit", "0005_export_jobs"),
    ("tenancy", None),
    ("reports", None),
]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def applied_state():
    """The models as the migrations applied now describe them."""
    return MigrationExecutor(connection)._create_project_state(with_applied_migrations=True).apps


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_rows_of_the_old_layout_are_read_through_the_moved_models():
    migrate(OLD_LAYOUT)
    old = applied_state()
    OldUser = old.get_model("auth", "User")
    OldTenant = old.get_model("allocations", "Tenant")
    OldMembership = old.get_model("allocations", "Membership")
    OldQuota = old.get_model("allocations", "Quota")
    OldTemplate = old.get_model("allocations", "DesktopTemplate")
    OldExportJob = old.get_model("audit", "ExportJob")
    ContentType = old.get_model("contenttypes", "ContentType")
    ContentType.objects.get_or_create(app_label="allocations", model="tenant")
    user = OldUser.objects.create(username="carol")
    tenant = OldTenant.objects.create(name="Old Labs", slug="old-labs")
    OldQuota.objects.create(tenant=tenant, max_desktops=7)
    OldMembership.objects.create(user=user, tenant=tenant, role="tenant-member")
    template = OldTemplate.objects.create(name="Old T", vcpus=2, memory_mib=4096, disk_image="x.qcow2")
    template.allowed_tenants.add(tenant)
    OldExportJob.objects.create(requested_by_id=user.pk, requested_by_username="carol", kind="allocations", fmt="csv")

    migrate(latest())

    moved = Tenant.objects.get(slug="old-labs")
    assert moved.pk == tenant.pk and moved.name == "Old Labs"
    assert Quota.objects.get(tenant=moved).max_desktops == 7
    membership = Membership.objects.get(tenant=moved)
    assert (membership.user.username, membership.role) == ("carol", "tenant-member")
    assert list(DesktopTemplate.objects.get(name="Old T").allowed_tenants.all()) == [moved]
    assert ExportJob.objects.get().requested_by_username == "carol"
    labels = set(
        applied_state()
        .get_model("contenttypes", "ContentType")
        .objects.filter(model="tenant")
        .values_list("app_label", flat=True)
    )
    assert labels == {"tenancy"}  # the admin's permissions and log entries follow the model

    migrate(OLD_LAYOUT)  # and back: the old layout reads the same rows
    old = applied_state()
    assert old.get_model("allocations", "Tenant").objects.get(pk=tenant.pk).slug == "old-labs"
    assert old.get_model("allocations", "Membership").objects.count() == 1
    migrate(latest())
    assert get_user_model().objects.filter(memberships__tenant__slug="old-labs").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_plain_text_token_table_of_drf_authtoken_is_dropped_on_upgrade():
    """Issue 15: DRF's authtoken kept every key in clear; upgrading removes that table and its keys."""
    migrate([("tenancy", "0001_tenant_and_membership_from_allocations")])
    user = get_user_model().objects.create(username="dave")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp, user_id integer)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, CURRENT_TIMESTAMP, %s)", ["a" * 40, user.pk])
    migrate(latest())
    assert "authtoken_token" not in connection.introspection.table_names()
