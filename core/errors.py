"""Domain errors shared by every app. ``core.api`` maps them to HTTP once;
UI views turn them into messages. Each carries a message a person can act on."""


class PortalError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Conflict(PortalError):
    """The request is well-formed but clashes with the current state (409)."""

    status_code = 409
    code = "conflict"


class NotFound(PortalError):
    status_code = 404
    code = "not_found"


class Forbidden(PortalError):
    status_code = 403
    code = "permission_denied"
