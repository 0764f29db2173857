"""Middleware that knows no domain: refuse addresses and forms carrying control characters before any
view (or the database) sees them, and send the Content-Security-Policy every page is written for."""

from __future__ import annotations

import re
from functools import wraps
from urllib.parse import unquote_to_bytes

from django.core.exceptions import DisallowedHost
from django.http import JsonResponse

from core.api import error_body
from core.views import is_api, plain_page

#: Control characters no path segment may hold (NUL included): nothing the portal names contains one.
_PATH_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
#: In a query string tab, newline and carriage return may appear in a value; the rest may not.
_QUERY_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def _refusal(request, message: str):
    if is_api(request):
        return JsonResponse(error_body(400, "invalid", message), status=400)
    return plain_page(400, "Bad request", message)


class RefuseControlCharactersMiddleware:
    """400 for a path or query string holding a control character, and for a form whose fields hold
    NUL (PostgreSQL cannot store it: it used to surface as a 500 from the first query, or from the
    audit event that recorded the filter). JSON bodies are checked by ``core.parsers``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        message = self.problem(request)
        if message:
            return _refusal(request, message)
        return self.get_response(request)

    @staticmethod
    def problem(request) -> str:
        if _PATH_CONTROL.search(request.path.encode("utf-8", "surrogatepass")):
            return "The address holds a control character (such as NUL); remove it and try again."
        query = request.META.get("QUERY_STRING", "")
        if query and _QUERY_CONTROL.search(unquote_to_bytes(query.replace("+", " "))):
            return "A filter or parameter holds a control character (such as NUL); remove it and try again."
        if request.method == "POST" and request.content_type in _FORMS:
            if any("\x00" in key or "\x00" in value for key, values in request.POST.lists() for value in values):
                return "A form field holds a NUL character; remove it and try again."
        return ""


#: What pages may load: scripts only from static files (no inline script, no eval), styles from static
#: files plus inline ``style`` attributes (the usage bars' widths), images also as data:/blob: URLs (noVNC's
#: cursor), websockets to this host (live updates, consoles), no frames, no plugins, forms post here.
CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "worker-src": "'self' blob:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def _policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def allow_inline_scripts(view):
    """For a third-party page that inlines its start-up script (ReDoc): the policy with inline scripts."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response.csp_inline_scripts = True
        return response

    return wrapped


class ContentSecurityPolicyMiddleware:
    """Add ``Content-Security-Policy`` (``CSP_DIRECTIVES``) to every response that has none."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" in response:
            return response
        directives = dict(CSP_DIRECTIVES)
        try:
            host = request.get_host()
        except DisallowedHost:
            host = ""
        if host:  # 'self' covers same-origin websockets in CSP 3 browsers; older ones need the URLs
            directives["connect-src"] = f"'self' ws://{host} wss://{host}"
        if getattr(response, "csp_inline_scripts", False):
            directives["script-src"] = "'self' 'unsafe-inline'"
        response["Content-Security-Policy"] = _policy(directives)
        return response
