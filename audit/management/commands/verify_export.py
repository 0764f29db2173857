import hashlib
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.event_export import check_file
from audit.exports import split_manifest


class Command(BaseCommand):
    help = (
        "Check an exported file offline against its manifest: body SHA-256, row count and, for audit "
        "events, every event's hash and the links between consecutive events."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")

    def handle(self, *args, path, **options):
        file = Path(path)
        fmt = file.suffix.lstrip(".")
        if fmt not in ("csv", "json", "ndjson"):
            raise CommandError("the file must end in .csv, .json or .ndjson")
        data = file.read_bytes()
        try:
            body, manifest = split_manifest(data, fmt)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if manifest.get("kind") == "audit-events":
            result = check_file(data, fmt)
            problems, rows = result.problems, result.rows
        else:
            problems = (
                []
                if hashlib.sha256(body).hexdigest() == manifest["body_sha256"]
                else ["the file's body does not match the manifest's SHA-256 (it was changed)"]
            )
            rows = manifest["rows"]
        for problem in problems:
            self.stdout.write(f"  {problem}")
        if problems:
            raise CommandError(f"{file.name} does not verify ({len(problems)} problem(s))")
        self.stdout.write(
            f"OK: {file.name}: {rows} {manifest['kind']} rows match the manifest (filter {manifest['filter']})."
        )
