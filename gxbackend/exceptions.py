"""One JSON error shape for every error the API returns, rendered in one place.

``{"error": {"code", "message", "fields": {name: [messages]}}, "request_id"}`` — docs/DESIGN.md §2. Services raise
:class:`DomainError` subclasses; DRF's own exceptions (validation, auth, throttling, 404/405) and anything
unexpected (500, logged with its traceback but never sent to the client) go through
:func:`api_exception_handler`; Django-level errors outside DRF (unknown URL, CSRF) use the ``handler*`` views.

PostgreSQL unreachable (restarting, failing over) is not a bug: any request that needs it answers 503
``database_unavailable`` with ``Retry-After``, so clients retry with their Idempotency-Key (a write either
committed whole or not at all) and the 5xx alerts see an outage, not a crash.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

logger = logging.getLogger("gxbackend.errors")


class DomainError(Exception):
    """A business rule said no. Subclasses fix the HTTP status and the machine-readable code."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}


class ValidationFailed(DomainError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "validation_error"


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Unprocessable(DomainError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"


class ServiceUnavailable(DomainError):
    """A dependency (PostgreSQL, Redis) is down: retry shortly. Answered with ``Retry-After``."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"
    retry_after = 1


DATABASE_ERRORS = (DatabaseOperationalError, DatabaseInterfaceError)
DATABASE_UNAVAILABLE = "The database is unavailable; retry shortly with the same Idempotency-Key."


def error_body(request: Any, code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    return {
        "error": {"code": code, "message": message, "fields": fields or {}},
        "request_id": getattr(request, "request_id", None),
    }


def error_response(
    request: HttpRequest, status_code: int, code: str, message: str, fields: dict | None = None
) -> JsonResponse:
    return JsonResponse(error_body(request, code, message, fields), status=status_code)


def _flatten_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested ``ValidationError.detail`` → ``{"field" or "parent.child": ["message", ...]}``."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            fields.update(_flatten_fields(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            fields[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                fields.update(_flatten_fields(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        fields[prefix or "non_field_errors"] = [str(detail)]
    return fields


def api_exception_handler(exc: Exception, context: dict) -> Response:
    request = context.get("request")
    if isinstance(exc, DATABASE_ERRORS):
        # Connection refused or cut (a restart, a failover): an outage, not a bug; no traceback.
        logger.warning("database unavailable in %s: %s", getattr(request, "path", "?"), type(exc).__name__)
        set_rollback()
        exc = ServiceUnavailable(DATABASE_UNAVAILABLE, code="database_unavailable")
    if isinstance(exc, DomainError):
        set_rollback()
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServiceUnavailable) else None
        return Response(error_body(request, exc.code, exc.message, exc.fields), status=exc.status_code,
                        headers=headers)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    if isinstance(exc, drf_exceptions.APIException):
        set_rollback()
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        if isinstance(exc, drf_exceptions.ValidationError):
            body = error_body(request, "validation_error", "The request has invalid fields.",
                              _flatten_fields(exc.detail))
        else:
            detail = exc.detail
            message = str(detail.get("detail", detail)) if isinstance(detail, dict) else str(detail)
            code = exc.get_codes()
            if isinstance(code, dict):
                code = code.get("detail", exc.default_code)
            body = error_body(request, str(code if isinstance(code, str) else exc.default_code), message)
        return Response(body, status=exc.status_code, headers=headers)

    set_rollback()
    logger.exception("unhandled error in %s", getattr(request, "path", "?"))
    return Response(
        error_body(request, "server_error", "An internal error occurred. Quote the request id when reporting it."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


# Django-level handlers (URLs outside DRF views, CSRF failures, crashes in middleware).
def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, 400, "bad_request", "The request could not be understood.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, 403, "permission_denied", "You do not have permission to do this.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(request, 404, "not_found", "Not found.")


def handler500(request: HttpRequest) -> JsonResponse:
    if isinstance(sys.exc_info()[1], DATABASE_ERRORS):  # outside DRF views: the admin, middleware
        response = error_response(request, 503, "database_unavailable", DATABASE_UNAVAILABLE)
        response["Retry-After"] = "1"
        return response
    return error_response(
        request, 500, "server_error", "An internal error occurred. Quote the request id when reporting it."
    )

