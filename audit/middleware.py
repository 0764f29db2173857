import re
import uuid

from audit.context import audit_context

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Give every request an id (the caller's X-Request-ID when well-formed) and
    remember its source address, so audit events can name both. The id is echoed
    back in the X-Request-ID response header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        request.request_id = request_id
        # REMOTE_ADDR only: X-Forwarded-For is caller-controlled unless a trusted proxy rewrites it.
        with audit_context(source_ip=request.META.get("REMOTE_ADDR") or None, request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
