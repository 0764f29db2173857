"""Loading the vGPU profile catalog (``shared/data/vgpu_profiles.csv``).

The whole file is validated first; any bad row rejects the load with every
problem and its line number, and nothing is written. A valid file is applied in
one transaction, so running it twice changes nothing the second time.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from audit import services as audit
from inventory.choices import ProfileSeries
from inventory.models import VGPUProfile

COLUMNS = ("board", "board_framebuffer_gib", "profile", "series", "framebuffer_mib", "max_per_gpu", "mig_backed")
_NAME = re.compile(r"^(?P<board>[A-Z0-9]+)-(?:(?P<slices>\d+)-)?(?P<gib>\d+)(?P<series>[A-Z])$")
_YES_NO = {"yes": True, "no": False}


class CatalogError(Exception):
    """The catalog file cannot be loaded; ``problems`` lists (line, message)."""

    def __init__(self, problems: list[tuple[int, str]]):
        self.problems = problems
        lines = "\n".join(f"  line {line}: {message}" for line, message in problems)
        super().__init__(f"{len(problems)} problem(s) in the profile catalog, nothing was loaded:\n{lines}")


@dataclass
class CatalogResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    not_in_file: list[str] = field(default_factory=list)


def _positive_int(row: dict, column: str, problems: list[str]) -> int | None:
    raw = (row.get(column) or "").strip()
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{column} must be a whole number, got {raw!r}")
        return None
    if value <= 0:
        problems.append(f"{column} must be positive, got {value}")
        return None
    return value


def parse_row(row: dict) -> tuple[dict | None, list[str]]:
    """One CSV row → VGPUProfile fields, or the list of what is wrong with it."""
    problems: list[str] = []
    board = (row.get("board") or "").strip()
    name = (row.get("profile") or "").strip()
    series = (row.get("series") or "").strip()
    board_gib = _positive_int(row, "board_framebuffer_gib", problems)
    framebuffer = _positive_int(row, "framebuffer_mib", problems)
    max_per_gpu = _positive_int(row, "max_per_gpu", problems)
    mig = _YES_NO.get((row.get("mig_backed") or "").strip().lower())
    if not board:
        problems.append("board is empty")
    match = _NAME.match(name)
    if not match:
        problems.append(f"profile {name!r} is not of the form <board>-<GiB><series> or <board>-<slices>-<GiB><series>")
    elif board and match["board"] != board:
        problems.append(f"profile {name} does not belong to board {board}")
    if series not in ProfileSeries.values:
        problems.append(f"series {series!r} is not one of {', '.join(ProfileSeries.values)}")
    elif match and match["series"] != series:
        problems.append(f"profile {name} ends in {match['series']}, but series says {series}")
    if mig is None:
        problems.append(f"mig_backed must be yes or no, got {row.get('mig_backed')!r}")
    elif match and mig != bool(match["slices"]):
        problems.append(f"profile {name}: mig_backed={row.get('mig_backed')} disagrees with its name")
    if board_gib and framebuffer and max_per_gpu and framebuffer * max_per_gpu > board_gib * 1024:
        problems.append(
            f"{max_per_gpu} × {framebuffer} MiB exceeds the board's {board_gib} GiB ({board_gib * 1024} MiB)"
        )
    if problems:
        return None, problems
    return {
        "name": name,
        "board": board,
        "board_framebuffer_mib": board_gib * 1024,
        "series": series,
        "framebuffer_mib": framebuffer,
        "max_per_gpu": max_per_gpu,
        "mig_backed": mig,
        "source": (row.get("source") or "").strip()[:200],
    }, []


def read_catalog(path: Path) -> list[dict]:
    """Parse and validate the whole file. Raises CatalogError listing every bad line."""
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise CatalogError([(0, f"cannot open {path}: {exc.strerror}")]) from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError([(1, f"header lacks column(s): {', '.join(missing)}")])
        rows, problems, seen = [], [], {}
        for row in reader:
            line = reader.line_num
            if None in row or any(value is None for value in row.values()):
                problems.append((line, f"expected {len(reader.fieldnames)} fields, got a different number"))
                continue
            fields, row_problems = parse_row(row)
            problems.extend((line, p) for p in row_problems)
            if fields:
                if fields["name"] in seen:
                    problems.append((line, f"profile {fields['name']} already defined on line {seen[fields['name']]}"))
                    continue
                seen[fields["name"]] = line
                rows.append(fields)
    if problems:
        raise CatalogError(problems)
    if not rows:
        raise CatalogError([(1, "the file holds no profiles")])
    return rows


def load_catalog(path: Path, *, actor=None) -> CatalogResult:
    """Upsert every profile of the file by name; audit one ``vgpu_catalog.loaded`` event when anything changed.
    Profiles missing from the file are reported, not deleted (GPUs and templates may use them)."""
    rows = read_catalog(path)
    result = CatalogResult()
    with transaction.atomic():
        existing = {p.name: p for p in VGPUProfile.objects.select_for_update()}
        for fields in rows:
            profile = existing.get(fields["name"])
            if profile is None:
                VGPUProfile(**fields).full_clean()
                VGPUProfile.objects.create(**fields)
                result.created.append(fields["name"])
                continue
            changed = {k: v for k, v in fields.items() if getattr(profile, k) != v}
            if not changed:
                result.unchanged += 1
                continue
            for key, value in changed.items():
                setattr(profile, key, value)
            profile.full_clean()
            profile.save(update_fields=list(changed))
            result.updated.append(fields["name"])
        names = {f["name"] for f in rows}
        result.not_in_file = sorted(n for n in existing if n not in names)
        if result.created or result.updated:
            audit.record(
                "vgpu_catalog.loaded",
                actor=actor,
                object_type="inventory.vgpuprofile",
                object_repr=str(path.name),
                after={"file": str(path), "created": result.created, "updated": result.updated},
            )
    return result
