"""Liveness, startup and readiness (DESIGN.md §5).

- ``/livez``: the process answers; no dependency is checked, so a database outage never restarts pods.
- ``/health``: start-up check: the app registry is loaded.
- ``/readyz``: the database (and Redis, when configured) answer, plus every check registered with
  :func:`register_readiness_check` (the projector registers projection lag, measured in blocks). 503 names
  each failing check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""


ReadinessCheck = Callable[[], CheckResult]
_checks: dict[str, ReadinessCheck] = {}


def register_readiness_check(name: str, check: ReadinessCheck) -> None:
    """Adds a named check to ``/readyz`` (called from an app's ``ready()``)."""
    _checks[name] = check


def check_database() -> CheckResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        # A broken persistent connection must not stay cached for the next probe.
        connection.close_if_unusable_or_obsolete()
        return CheckResult(False, f"database unreachable: {type(exc).__name__}")
    return CheckResult(True)


def check_cache() -> CheckResult:
    try:
        cache.set("readyz", "1", timeout=5)
        if cache.get("readyz") != "1":
            return CheckResult(False, "cache did not return the value just written")
    except Exception as exc:
        return CheckResult(False, f"cache unreachable: {type(exc).__name__}")
    return CheckResult(True)


def run_readiness_checks() -> dict[str, CheckResult]:
    results = {"database": check_database()}
    if settings.REDIS_URL:
        results["cache"] = check_cache()
    for name, check in _checks.items():
        try:
            results[name] = check()
        except Exception as exc:
            logger.exception("readiness check %s crashed", name)
            results[name] = CheckResult(False, f"check failed: {type(exc).__name__}")
    return results


def livez(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def health(request: HttpRequest) -> JsonResponse:
    if not apps.ready:
        return JsonResponse({"status": "starting"}, status=503)
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    results = run_readiness_checks()
    ready = all(result.ok for result in results.values())
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {name: {"ok": r.ok, **({"detail": r.detail} if r.detail else {})} for name, r in results.items()},
    }
    if not ready:
        failed = ", ".join(f"{name} ({r.detail})" for name, r in results.items() if not r.ok)
        body["message"] = f"not ready: {failed}"
    return JsonResponse(body, status=200 if ready else 503)
