"""``manage.py identity_sync``: the periodic group sync, run now (identity.sync)."""

from django.core.management.base import BaseCommand

from identity.sync import sync_all


class Command(BaseCommand):
    help = "Reconcile the memberships granted by group mappings with the directory's groups now."

    def handle(self, *args, **options):
        for source, result in sync_all(trigger="manage.py identity_sync").items():
            self.stdout.write(f"{source}: {result}")
