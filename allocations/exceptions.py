"""Domain errors of allocations; ``core.api`` maps them to HTTP once."""

from core.errors import Conflict, NotFound, PortalError


class QuotaExceeded(Conflict):
    code = "quota_exceeded"


class NoCapacity(Conflict):
    code = "no_capacity"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class NotAllowed(PortalError):
    """A well-formed request the caller's tenant may not make (template not offered, too long)."""

    status_code = 403
    code = "not_allowed"


__all__ = ["QuotaExceeded", "NoCapacity", "InvalidTransition", "NotAllowed", "NotFound"]
