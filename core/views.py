from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render


def healthz(request):
    """Liveness for load balancers: the process answers and the database is reachable."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means "not healthy"
        return JsonResponse({"status": "error", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok"})


def _error_page(request, status: int, title: str, message: str):
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"status": status, "code": title.lower().replace(" ", "_"), "message": message}}, status=status
        )
    return render(request, "error.html", {"title": title, "message": message}, status=status)


def not_found(request, exception=None):
    return _error_page(request, 404, "Not found", "There is nothing here, or it is not yours to see.")


def forbidden(request, exception=None):
    return _error_page(request, 403, "Forbidden", str(exception) if exception else "Your role cannot open this page.")
