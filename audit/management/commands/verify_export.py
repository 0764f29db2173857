import hashlib
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.event_export import check_file
from audit.exports import MANIFEST_SUFFIX, split_manifest
from audit.signing import manifest_problem


class Command(BaseCommand):
    help = (
        "Check an exported file offline against its manifest: the manifest's signature (PORTAL_AUDIT_EXPORT_KEY), "
        "body SHA-256, row count and, for audit events, every event's hash, the order of positions, the links "
        "between consecutive events and, in a contiguous export, that no position is missing. A CSV's manifest is the "
        f"FILE{MANIFEST_SUFFIX} beside it (or --manifest); JSON and NDJSON carry theirs (a manifest file, "
        "if given or beside them, must say the same)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument(
            "--manifest", help=f"the export's manifest file (default: the FILE{MANIFEST_SUFFIX} beside it)"
        )
        parser.add_argument(
            "--allow-unsigned",
            action="store_true",
            help="check a manifest written before manifests were signed (its digest proves nothing by itself)",
        )

    def handle(self, *args, path, manifest=None, allow_unsigned=False, **options):
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
            result = check_file(data, fmt, beside, allow_unsigned=allow_unsigned)
            problems, rows = problems + result.problems, result.rows
        else:
            unsigned = manifest_problem(manifest, allow_unsigned=allow_unsigned)
            if unsigned:
                problems.append(unsigned)
            if hashlib.sha256(body).hexdigest() != manifest["body_sha256"]:
                problems.append("the file's body does not match the manifest's SHA-256 (it was changed)")
            rows = manifest["rows"]
        for problem in problems:
            self.stdout.write(f"  {problem}")
        if problems:
            raise CommandError(f"{file.name} does not verify ({len(problems)} problem(s))")
        signed = "signed manifest" if "signature" in manifest else "UNSIGNED manifest"
        contiguity = ""
        if "contiguous" in manifest:
            contiguity = (
                f", seq {manifest['first_seq']}..{manifest['last_seq']} without gaps"
                if manifest["contiguous"]
                else f", not contiguous (filtered by {', '.join(manifest['non_contiguous_filters'])})"
            )
        self.stdout.write(
            f"OK: {file.name}: {rows} {manifest['kind']} rows match the {signed} "
            f"(filter {manifest['filter']}{contiguity})."
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
