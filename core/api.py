"""Shared DRF pieces: one error shape, pagination, and writes routed through services.

Every error body is ``{"error": {"status": 409, "code": "...", "message": "...",
"fields": {...}}}``: ``message`` is a sentence a person can act on, ``fields``
maps invalid inputs to their problems (400 only). The database being away is 503 with
``core.outage.MESSAGE``; anything else unforeseen is left to Django, which logs it and answers
with ``core.views.server_error`` (the same shape, 500).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from audit.models import AppendOnlyError
from core.errors import PortalError
from core.outage import MESSAGE as DATABASE_UNAVAILABLE
from core.outage import is_database_outage, log_outage


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail → {"field.sub": ["message", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                out.update(_flatten(item, f"{prefix}[{index}]"))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def error_body(status_code: int, code: str, message: str, fields: dict | None = None, details: dict | None = None):
    error = {"status": status_code, "code": code, "message": message}
    if fields:
        error["fields"] = fields
    if details:
        error["details"] = details
    return {"error": error}


def _validation_message(fields: dict[str, list[str]]) -> str:
    parts = []
    for name, problems in fields.items():
        label = "" if name == "non_field_errors" else f"{name}: "
        parts.append(label + " ".join(problems))
    return "Invalid input. " + "; ".join(parts)


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, PortalError):
        return Response(error_body(exc.status_code, exc.code, exc.message, details=exc.details), status=exc.status_code)
    if isinstance(exc, AppendOnlyError):
        return Response(error_body(409, "append_only", str(exc)), status=409)
    if is_database_outage(exc):
        request = context.get("request")
        log_outage(request.path if request is not None else "an API call", exc)
        return Response(error_body(503, "database_unavailable", DATABASE_UNAVAILABLE), status=503)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found (it does not exist or you may not see it).")

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        response.data = error_body(400, "invalid", _validation_message(fields), fields=fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        message = str(detail) if not isinstance(detail, (list, dict)) else _validation_message(_flatten(detail))
        response.data = error_body(response.status_code, code if isinstance(code, str) else "error", message)
    return response


class PortalPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class ServiceWriteMixin:
    """Route a ModelViewSet's writes through service functions (validation, locks, audit).

    Views set ``create_service(data, *, actor)``, ``update_service(instance, changes, *, actor)``
    and ``delete_service(instance, *, actor)`` as staticmethods.
    """

    create_service = None
    update_service = None
    delete_service = None

    def perform_create(self, serializer):
        serializer.instance = type(self).create_service(dict(serializer.validated_data), actor=self.request.user)

    def perform_update(self, serializer):
        serializer.instance = type(self).update_service(
            serializer.instance, dict(serializer.validated_data), actor=self.request.user
        )

    def perform_destroy(self, instance):
        type(self).delete_service(instance, actor=self.request.user)
