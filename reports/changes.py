"""An audit event's change as lines a person reads: ``field: before → after``.

``before`` and ``after`` hold the fields that changed (an update), every field (a create: ``after``
only; a delete: ``before`` only) or any JSON a service recorded. Nested objects are flattened to
dotted paths (``limits.A40-8Q: 2 → 4``), lists of plain values are joined, anything else is compact
JSON; a value longer than ``SHORT`` characters is shown cut, with the whole of it one click away."""

from __future__ import annotations

import json
from dataclasses import dataclass

#: Characters of a value shown before it is cut (the rest behind "show all").
SHORT = 120
#: How deep nested objects are flattened into dotted paths; deeper ones are shown as JSON.
DEPTH = 3


@dataclass(frozen=True)
class Value:
    full: str

    @property
    def long(self) -> bool:
        return len(self.full) > SHORT

    @property
    def short(self) -> str:
        return self.full[:SHORT].rstrip() + "…" if self.long else self.full


@dataclass(frozen=True)
class ChangeLine:
    """One field: its value before (None: it was not there) and after (None: it is gone)."""

    field: str
    before: Value | None
    after: Value | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


def text(value) -> str:
    """A JSON value as a person reads it."""
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value if value.strip() else ("(empty)" if not value else repr(value))  # whitespace shown
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


def flatten(value, prefix: str = "", depth: int = 0) -> dict[str, object]:
    """{"a": {"b": 1}} → {"a.b": 1}; a value that is not an object is one field named ``value``."""
    if not isinstance(value, dict):
        return {prefix or "value": value}
    if not value and prefix:
        return {prefix: value}
    out: dict[str, object] = {}
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, dict) and item and depth + 1 < DEPTH:
            out.update(flatten(item, name, depth + 1))
        else:
            out[name] = item
    return out


def change_lines(before, after) -> list[ChangeLine]:
    """The fields of ``before`` and ``after`` in the order recorded (before's first), one line each;
    a field whose value did not change is left out (an update records only changes anyway)."""
    old = flatten(before) if before is not None else {}
    new = flatten(after) if after is not None else {}
    lines = []
    for name in [*old, *(k for k in new if k not in old)]:
        if name in old and name in new and old[name] == new[name]:
            continue
        lines.append(
            ChangeLine(
                name,
                Value(text(old[name])) if name in old else None,
                Value(text(new[name])) if name in new else None,
            )
        )
    return lines
