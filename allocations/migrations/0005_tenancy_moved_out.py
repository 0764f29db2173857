"""Tenant and Membership now live in the tenancy app (``tenancy.0001``): allocations' foreign keys
point there and the old models leave allocations' state. State only: the tables, their rows and
their constraints in the database do not change."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("allocations", "0004_quota_usage_counters"),
        ("tenancy", "0001_tenant_and_membership_from_allocations"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="quota",
                    name="tenant",
                    field=models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE, related_name="quota", to="tenancy.tenant"
                    ),
                ),
                migrations.AlterField(
                    model_name="desktoptemplate",
                    name="allowed_tenants",
                    field=models.ManyToManyField(blank=True, related_name="templates", to="tenancy.tenant"),
                ),
                migrations.AlterField(
                    model_name="desktop",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="desktops", to="tenancy.tenant"
                    ),
                ),
                migrations.AlterField(
                    model_name="quotarequest",
                    name="tenant",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="quota_requests", to="tenancy.tenant"
                    ),
                ),
                migrations.DeleteModel(name="Membership"),
                migrations.DeleteModel(name="Tenant"),
            ],
            database_operations=[],
        ),
    ]
