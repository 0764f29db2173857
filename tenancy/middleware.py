"""Who is acting in this request, for audit events written where no caller passes ``actor=``
(the model signals of ``tenancy.audit_signals``: the Django admin, a shell, a cascade); and the time
zone that person chose, for ``core.timezones``."""

from __future__ import annotations

import contextvars

from core import timezones
from tenancy.preferences import time_zone_of

_request: contextvars.ContextVar = contextvars.ContextVar("tenancy_current_request", default=None)


def current_actor():
    """The signed-in user of the request being handled, or ``None`` (no request, or anonymous).

    ``request.user`` is read when asked, so an API request that DRF authenticated by token (DRF sets
    the user on the underlying request) names that user too."""
    request = _request.get()
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and user.is_authenticated else None


class CurrentRequestMiddleware:
    """Keep the request in a contextvar while it is handled (after ``AuthenticationMiddleware``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


class TimeZonePreferenceMiddleware:
    """Hand the zone a signed-in person chose (``tenancy.preferences``) to ``core.timezones``'
    middleware, which runs next and renders the request in it rather than the browser's zone."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            setattr(request, timezones.CHOSEN, time_zone_of(user))
        return self.get_response(request)
