import hashlib
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.event_export import check_file
from audit.exports import MANIFEST_SUFFIX, split_manifest


class Command(BaseCommand):
    help = (
        "Check an exported file offline against its manifest: body SHA-256, row count and, for audit "
        "events, every event's hash and the links between consecutive events. A CSV's manifest is the "
        f"FILE{MANIFEST_SUFFIX} beside it (or --manifest); JSON and NDJSON carry theirs (a manifest file, "
        "if given or beside them, must say the same)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument(
            "--manifest", help=f"the export's manifest file (default: the FILE{MANIFEST_SUFFIX} beside it)"
        )

    def handle(self, *args, path, manifest=None, **options):
        file = Path(path)
        fmt = file.suffix.lstrip(".")
        if fmt not in ("csv", "json", "ndjson"):
            raise CommandError("the file must end in .csv, .json or .ndjson")
        data = file.read_bytes()
        beside = _read_manifest(Path(manifest) if manifest else file.with_name(file.name + MANIFEST_SUFFIX), manifest)
        try:
            body, manifest = split_manifest(data, fmt, beside)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        problems = []
        if beside is not None and beside != manifest:
            problems.append("the manifest file beside it differs from the one inside the file")
        if manifest.get("kind") == "audit-events":
            result = check_file(data, fmt, beside)
            problems, rows = problems + result.problems, result.rows
        else:
            if hashlib.sha256(body).hexdigest() != manifest["body_sha256"]:
                problems.append("the file's body does not match the manifest's SHA-256 (it was changed)")
            rows = manifest["rows"]
        for problem in problems:
            self.stdout.write(f"  {problem}")
        if problems:
            raise CommandError(f"{file.name} does not verify ({len(problems)} problem(s))")
        self.stdout.write(
            f"OK: {file.name}: {rows} {manifest['kind']} rows match the manifest (filter {manifest['filter']})."
        )


def _read_manifest(path: Path, named: str | None) -> dict | None:
    """The manifest file's content; None when it was not named and is not there."""
    if not path.exists():
        if named:
            raise CommandError(f"no manifest file at {path}")
        return None
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"{path.name} is not a manifest (JSON): {exc}") from None
    if not isinstance(manifest, dict) or "body_sha256" not in manifest:
        raise CommandError(f"{path.name} is not an export's manifest (no body_sha256)")
    return manifest
