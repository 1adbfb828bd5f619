"""HTTP metrics under the names the alert rules use, correct with several gunicorn workers.

``http_requests_total{method,route,status}`` and ``http_request_duration_seconds{method,route}``; ``route`` is
the URL pattern (``api/v1/users/<uuid:user_id>``), never the raw path, so cardinality stays bounded.
When ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn, see deploy/gunicorn.conf.py) every worker writes its
samples there and ``/metrics`` aggregates all workers with ``MultiProcessCollector``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered, by method, route pattern and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request, by method and route pattern.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_KNOWN_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.route or match.view_name or "unmatched"


class HttpMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _KNOWN_METHODS else "OTHER"
        route = _route(request)
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
        return response


def render_registry() -> tuple[bytes, str]:
    """The exposition text of this process, or of every worker when running in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def metrics_view(request: HttpRequest) -> HttpResponse:
    body, content_type = render_registry()
    return HttpResponse(body, content_type=content_type)
