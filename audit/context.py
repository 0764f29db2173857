"""The request an audit event came from: source IP and request id, kept in a contextvar.

The middleware sets it for each HTTP request; Celery tasks and management
commands may set their own with ``audit_context(...)``. Services never pass it
around by hand.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    source_ip: str | None = None
    request_id: str = ""


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("audit_request", default=RequestContext())  # noqa: B039 (frozen dataclass: immutable)


def current() -> RequestContext:
    return _current.get()


@contextmanager
def audit_context(*, source_ip: str | None = None, request_id: str = ""):
    token = _current.set(RequestContext(source_ip=source_ip, request_id=request_id))
    try:
        yield
    finally:
        _current.reset(token)
