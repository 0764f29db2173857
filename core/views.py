"""Health, and the error pages: under /api/ every error is the JSON shape of ``core.api``; elsewhere
a page. The database being away is 503 everywhere, in words, without the driver's text."""

import sys

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import escape
from django.views import defaults

from core.api import error_body
from core.outage import MESSAGE as DATABASE_UNAVAILABLE
from core.outage import is_database_outage, log_outage


def healthz(request):
    """Liveness for load balancers: the process answers and the database is reachable. Anonymous
    callers read this, so a failure is named, never described (the log has the driver's words)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means "not healthy"
        log_outage(request.path, exc)
        return JsonResponse({"status": "error", "database": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def is_api(request) -> bool:
    return request.path.startswith("/api/")


def plain_page(status: int, title: str, message: str) -> HttpResponse:
    """A page that needs nothing but this process: no template context, no session, no database."""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · GPU Portal</title>'
        f"</head><body><main><h1>{escape(title)}</h1><p>{escape(message)}</p>"
        '<p><a href="/">Back to home</a></p></main></body></html>'
    )
    return HttpResponse(body, status=status, content_type="text/html; charset=utf-8")


def _error_page(request, status: int, title: str, message: str):
    if is_api(request):
        return JsonResponse(error_body(status, title.lower().replace(" ", "_"), message), status=status)
    return render(request, "error.html", {"title": title, "message": message}, status=status)


def not_found(request, exception=None):
    return _error_page(request, 404, "Not found", "There is nothing here, or it is not yours to see.")


def forbidden(request, exception=None):
    return _error_page(request, 403, "Forbidden", str(exception) if exception else "Your role cannot open this page.")


def server_error(request):
    """handler500: Django calls it while handling the exception, wherever in the request it was raised
    (a view, the session or authentication middleware). The database being away is 503 in words."""
    exc = sys.exc_info()[1]
    if is_database_outage(exc):
        if is_api(request):
            return JsonResponse(error_body(503, "database_unavailable", DATABASE_UNAVAILABLE), status=503)
        return plain_page(503, "Service unavailable", DATABASE_UNAVAILABLE)
    if is_api(request):
        message = "Something went wrong on our side; it has been logged. Try again, or tell an administrator."
        return JsonResponse(error_body(500, "server_error", message), status=500)
    return defaults.server_error(request)
