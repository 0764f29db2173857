from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inventory.services.catalog import CatalogError, load_catalog


class Command(BaseCommand):
    help = "Load the vGPU profile catalog CSV (idempotent). Any bad row rejects the file, with line numbers."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", default=None, help=f"CSV file (default: {settings.PROFILE_CATALOG})")

    def handle(self, *args, path=None, **options):
        path = Path(path) if path else settings.PROFILE_CATALOG
        try:
            result = load_catalog(path)
        except CatalogError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"vGPU catalog {path}: {len(result.created)} created, {len(result.updated)} updated, "
            f"{result.unchanged} unchanged."
        )
        if result.not_in_file:
            self.stdout.write(
                f"Kept {len(result.not_in_file)} profile(s) not in the file: {', '.join(result.not_in_file)}"
            )
