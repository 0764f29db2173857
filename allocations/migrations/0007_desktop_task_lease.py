from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("allocations", "0006_quota_and_template_bounds"),
    ]

    operations = [
        migrations.AddField(
            model_name="desktop",
            name="lease_holder",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="desktop",
            name="lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="desktop",
            name="requeued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
