"""Extra cards on the fleet overview (/inventory/, ``allocations.fleet_pages``) that higher layers add, as
bookings adds the capacity held for them (allocations must not import them: they register here, in their
AppConfig.ready).

A panel is a callable ``panel(request) -> dict | None``: None shows nothing (nothing to say), else a card
``{"id": html id, "title": heading, "template": the template to include, ...}``; the whole dict is the
included template's ``panel``. A panel costs the page a constant number of queries, whatever the fleet.
"""

from __future__ import annotations

from collections.abc import Callable

OVERVIEW_PANELS: list[Callable[..., dict | None]] = []


def panels_for(request) -> list[dict]:
    """The cards the registered panels have for ``request``, in the order they were registered."""
    return [card for card in (panel(request) for panel in OVERVIEW_PANELS) if card]
