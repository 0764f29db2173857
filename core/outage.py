"""The database is away: one test for it and one answer, for the API, the pages and ``/healthz``.

Django wraps every driver's errors (psycopg's, sqlite3's) in its own classes; a refused or dropped
connection, an unopenable file or a locked database is an ``OperationalError`` or ``InterfaceError``.
Those are answered 503 with ``MESSAGE``, never with the driver's words (they name hosts and ports);
the log keeps the driver's words for operators, on one line."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError

logger = logging.getLogger("portal.outage")

MESSAGE = "The database is unavailable; try again in a moment."


def is_database_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError))


def log_outage(request_path: str, exc: BaseException) -> None:
    """One line for operators: where it happened and the driver's own words."""
    logger.warning("Database unavailable during %s: %s", request_path, " ".join(str(exc).split()))
