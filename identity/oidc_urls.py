"""mozilla-django-oidc's sign-in and callback views at /oidc/, answering 404 in words where OpenID Connect
is not configured (its views would fail on the missing settings instead)."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.http import Http404
from django.urls import path
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView


def _when_configured(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not getattr(settings, "OIDC_RP_CLIENT_ID", ""):
            raise Http404("Single sign-on (OpenID Connect) is not configured on this portal.")
        return view(request, *args, **kwargs)

    return wrapper


urlpatterns = [
    path(
        "callback/",
        _when_configured(OIDCAuthenticationCallbackView.as_view()),
        name="oidc_authentication_callback",
    ),
    path(
        "authenticate/",
        _when_configured(OIDCAuthenticationRequestView.as_view()),
        name="oidc_authentication_init",
    ),
]
