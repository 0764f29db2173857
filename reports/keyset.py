"""Keyset pagination of the audit log on ``seq``: a page is "the N events before (or after) position S",
answered from the unique index on ``seq`` with ``WHERE seq < S ORDER BY seq DESC LIMIT N+1``, so page
10,000 of a log of millions costs what page 1 does (``OFFSET`` reads and throws away every row before
it, and a page count needs ``COUNT(*)`` over the whole selection). Pages are newest first; ``?before=S``
goes to older events, ``?after=S`` to newer ones. The page and the API use this one module."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import PortalError

#: The query parameters of a keyset page (present, even empty: keyset paging; ``?before=`` is the newest page).
CURSOR_PARAMS = ("before", "after")


@dataclass
class KeysetPage:
    rows: list = field(default_factory=list)
    #: ``?before=`` of the next older page, or None at the oldest.
    older: int | None = None
    #: ``?after=`` of the next newer page, or None at the newest.
    newer: int | None = None


def wants_keyset(params) -> bool:
    return any(name in params for name in CURSOR_PARAMS)


def read_cursor(params) -> tuple[int | None, int | None]:
    """(before, after) from the query; PortalError (400) in words for anything but one whole number."""
    values = {}
    for name in CURSOR_PARAMS:
        raw = (params.get(name) or "").strip()
        if not raw:
            continue
        if not raw.isdigit() or len(raw) > 18:
            raise PortalError(f"{name} is an event's position (seq): a whole number, e.g. {name}=1200.")
        values[name] = int(raw)
    if len(values) == 2:
        raise PortalError("Give before or after, not both: one page starts at one position.")
    return values.get("before"), values.get("after")


def keyset_page(queryset, *, before: int | None = None, after: int | None = None, size: int = 50) -> KeysetPage:
    """The ``size`` events of ``queryset`` just before ``before`` (or just after ``after``; neither: the
    newest), newest first, and the cursors of the pages on either side. Two or three indexed queries,
    none with OFFSET, whatever the position."""
    chained = queryset.filter(seq__isnull=False)
    if after is not None:
        rows = list(chained.filter(seq__gt=after).order_by("seq")[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        newer = rows[0].seq if more_newer else None
        oldest = rows[-1].seq if rows else after + 1
        older = oldest if chained.filter(seq__lt=oldest).exists() else None
        return KeysetPage(rows, older=older, newer=newer)
    narrowed = chained.filter(seq__lt=before) if before is not None else chained
    rows = list(narrowed.order_by("-seq")[: size + 1])
    older = rows[size - 1].seq if len(rows) > size else None
    rows = rows[:size]
    newer = None
    if before is not None:
        newest = rows[0].seq if rows else before - 1
        newer = newest if chained.filter(seq__gt=newest).exists() else None
    return KeysetPage(rows, older=older, newer=newer)
