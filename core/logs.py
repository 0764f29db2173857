"""Logging filters the settings' LOGGING names.

Django logs a refused request (403 PermissionDenied, 400 SuspiciousOperation) at WARNING with the
exception's full traceback; a refusal is expected, not a bug, so it is one line. A 503 because the
database is away is one line too, with the driver's words: a traceback per request during an outage
would bury the one line that matters. Real errors (other 5xx) keep their traceback."""

from __future__ import annotations

import logging

from core.outage import is_database_outage


class OneLineRefusals(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        status = getattr(record, "status_code", None)
        exc = record.exc_info[1]
        if is_database_outage(exc):
            words = " ".join(str(exc).split()).replace("%", "%%")  # msg is %-formatted with the record's args
            record.msg = f"{record.msg} (database unavailable: {words})"
        elif status is None or status >= 500:
            return True
        record.exc_info = None
        record.exc_text = None
        return True
