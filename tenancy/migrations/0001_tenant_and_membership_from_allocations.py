"""Tenant and Membership move here from allocations; their tables and rows stay where they are.

State only (``SeparateDatabaseAndState``): the tables keep their names (``allocations_tenant``,
``allocations_membership``, set on the models as ``db_table``), so no row is copied or touched.
The content types are relabelled, so the admin's permissions and log entries follow the models.
``allocations.0005_tenancy_moved_out`` then points allocations' foreign keys here and forgets
the old models.
"""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ("tenant", "membership")


def relabel_content_types(apps, schema_editor, old="allocations", new="tenancy"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if ContentType.objects.filter(app_label=new, model=model).exists():
            continue  # already made (a database created after the move)
        ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def relabel_back(apps, schema_editor):
    relabel_content_types(apps, schema_editor, old="tenancy", new="allocations")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("allocations", "0004_quota_usage_counters"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Tenant",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=100, unique=True)),
                        (
                            "slug",
                            models.CharField(
                                max_length=50,
                                unique=True,
                                validators=[
                                    django.core.validators.RegexValidator(
                                        "^[a-z0-9][a-z0-9-]{0,49}$", "Use lower-case letters, digits and hyphens."
                                    )
                                ],
                            ),
                        ),
                        ("description", models.TextField(blank=True)),
                        (
                            "is_active",
                            models.BooleanField(
                                default=True, help_text="Inactive tenants keep their history but get nothing new."
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={"db_table": "allocations_tenant", "ordering": ["name"]},
                ),
                migrations.CreateModel(
                    name="Membership",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        (
                            "role",
                            models.CharField(
                                choices=[
                                    ("platform-admin", "Platform admin"),
                                    ("tenant-member", "Tenant member"),
                                    ("auditor", "Auditor"),
                                ],
                                max_length=20,
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="memberships",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "tenant",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="memberships",
                                to="tenancy.tenant",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "allocations_membership",
                        "ordering": ["user__username", "role"],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("user", "tenant", "role"), name="membership_unique_tenant_role"
                            ),
                            models.UniqueConstraint(
                                condition=models.Q(("tenant__isnull", True)),
                                fields=("user", "role"),
                                name="membership_unique_platform_role",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(
                                    models.Q(("role", "tenant-member"), ("tenant__isnull", False)),
                                    models.Q(("role__in", ("platform-admin", "auditor")), ("tenant__isnull", True)),
                                    _connector="OR",
                                ),
                                name="membership_tenant_matches_role",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_types, relabel_back),
    ]
