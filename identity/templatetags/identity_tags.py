"""``{% identity_sign_in %}`` on the login page: "Sign in with <provider>" when OpenID Connect is
configured, and why the last attempt through a provider or the directory did not work."""

from __future__ import annotations

from django import template
from django.conf import settings

register = template.Library()


@register.inclusion_tag("identity/sign_in_options.html", takes_context=True)
def identity_sign_in(context):
    request = context.get("request")
    oidc = bool(getattr(settings, "OIDC_RP_CLIENT_ID", ""))
    return {
        "oidc": oidc,
        "oidc_name": getattr(settings, "PORTAL_OIDC_NAME", "single sign-on"),
        "next": context.get("next") or "",
        "sso_failed": oidc and request is not None and request.GET.get("sso") == "failed",
        "directory_error": getattr(request, "identity_directory_error", ""),
    }
