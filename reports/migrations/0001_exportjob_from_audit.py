"""ExportJob moves here from audit; its table (``audit_exportjob``) and rows stay where they are
(state only), and its content type is relabelled so admin permissions and log entries follow it."""

from django.db import migrations, models


def relabel_content_type(apps, schema_editor, old="audit", new="reports"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=new, model="exportjob").exists():
        ContentType.objects.filter(app_label=old, model="exportjob").update(app_label=new)


def relabel_back(apps, schema_editor):
    relabel_content_type(apps, schema_editor, old="reports", new="audit")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("audit", "0006_exportjob_moved_to_reports"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ExportJob",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("requested_by_id", models.BigIntegerField()),
                        ("requested_by_username", models.CharField(max_length=150)),
                        ("kind", models.CharField(max_length=20)),
                        ("fmt", models.CharField(max_length=10)),
                        ("filters", models.JSONField(default=dict)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("running", "Running"),
                                    ("done", "Done"),
                                    ("failed", "Failed"),
                                ],
                                default="pending",
                                max_length=10,
                            ),
                        ),
                        ("path", models.CharField(blank=True, max_length=500)),
                        ("rows", models.BigIntegerField(blank=True, null=True)),
                        ("manifest", models.JSONField(blank=True, null=True)),
                        ("error", models.CharField(blank=True, max_length=500)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={"db_table": "audit_exportjob", "ordering": ["-created_at", "-id"]},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_type, relabel_back),
    ]
