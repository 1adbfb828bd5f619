"""Request id, access log, request-size limit, JSON errors in DEBUG, internal endpoints, and the CSP."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import resolve

from gxbackend.exceptions import error_response
from gxbackend.logging import request_id_var

access_log = logging.getLogger("gxbackend.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


class RequestIdMiddleware:
    """Accepts a well-formed ``X-Request-ID`` or makes one, echoes it, and writes one access-log line."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            user = getattr(request, "user", None)
            access_log.info(
                "%s %s %s", request.method, request.path, response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user_id": str(user.pk) if user is not None and user.is_authenticated else None,
                },
            )
            return response
        finally:
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Refuses bodies over ``MAX_REQUEST_BODY_BYTES`` with 413 before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.limit = settings.MAX_REQUEST_BODY_BYTES

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(request, 400, "bad_request", "Content-Length must be an integer.")
        if length > self.limit:
            return error_response(
                request, 413, "payload_too_large", f"Request body exceeds the limit of {self.limit} bytes."
            )
        return self.get_response(request)


class ApiJsonErrorsMiddleware:
    """Keeps errors under ``/api/`` in the JSON shape when ``DEBUG`` is on.

    With ``DEBUG`` Django answers an unknown URL (and a crash outside DRF) with its HTML debug page instead of
    the ``handler*`` views; an API client must get the documented JSON error whatever the mode. Other paths keep
    the debug pages, which are meant for developers.
    """

    _CODES = {400: ("bad_request", "The request could not be understood."),
              403: ("permission_denied", "You do not have permission to do this."),
              404: ("not_found", "Not found."),
              500: ("server_error", "An internal error occurred. Quote the request id when reporting it.")}

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.DEBUG and request.path.startswith("/api/") and response.status_code in self._CODES \
                and response.get("Content-Type", "").startswith("text/html"):
            code, message = self._CODES[response.status_code]
            return error_response(request, response.status_code, code, message)
        return response


class InternalEndpointsMiddleware:
    """Serves the probes and ``/metrics`` before Django validates the ``Host`` header.

    A kubelet probes, and Prometheus scrapes, a pod at its IP (``Host: 10.1.2.3:3001``), which ``ALLOWED_HOSTS``
    (the public and Service names) does not list: without this every probe and scrape answered 400
    ``DisallowedHost`` and the pod never started. These paths are reached inside the cluster only (the
    ingress routes ``/api/``, ``/admin/`` and ``/static/``); every other path is still host-checked.
    """

    PATHS = frozenset({"/health", "/livez", "/readyz", "/metrics"})

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in self.PATHS or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        match = resolve(request.path_info)
        request.resolver_match = match  # the route label of the HTTP metrics
        return match.func(request, *match.args, **match.kwargs)



# Pages (the admin, Swagger UI) load scripts, styles and images from this origin only; the app serves Swagger
# UI's files itself (drf-spectacular-sidecar), so no CDN is named. Inline styles stay allowed: the admin's
# templates and Swagger UI's page carry style attributes and one <style> block; inline scripts never run.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
            "frame-ancestors 'none'")
# Everything else (JSON, scripts, metrics) is never a document a browser should render anything from.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class ContentSecurityPolicyMiddleware:
    """Sets ``Content-Security-Policy``: ``PAGE_CSP`` on HTML pages, ``API_CSP`` on every other response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            is_page = response.get("Content-Type", "").startswith("text/html")
            response["Content-Security-Policy"] = PAGE_CSP if is_page else API_CSP
        return response
