"""Liveness, startup and readiness (docs/DESIGN.md §5).

- ``/livez``: the process answers; no dependency is checked, so a database outage never restarts pods.
- ``/health``: start-up check: the app registry is loaded.
- ``/readyz``: gates only on what this pod needs to serve: the database and Redis (when configured). Checks
  registered with :func:`register_readiness_check` are reported in the body too; one that does not *gate*
  (the projector's projection lag, unless ``READYZ_FAIL_ON_PROJECTION_LAG`` is on) never makes the answer 503:
  its failure is listed under ``warnings``. Login, registration and profile reads need no projection, so a
  stuck projector must not take every API pod out of the Service. 503 names each failing gating check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""


ReadinessCheck = Callable[[], CheckResult]


@dataclass(frozen=True)
class _Registered:
    check: ReadinessCheck
    gates: Callable[[], bool]


_checks: dict[str, _Registered] = {}


def _always() -> bool:
    return True


def register_readiness_check(name: str, check: ReadinessCheck, *, gates: Callable[[], bool] = _always) -> None:
    """Adds a named check to ``/readyz`` (called from an app's ``ready()``).

    ``gates`` is asked at each probe (so a setting can change it): when it answers False, a failure of the
    check is reported in the body but leaves the pod ready.
    """
    _checks[name] = _Registered(check, gates)


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


def run_readiness_checks() -> dict[str, tuple[CheckResult, bool]]:
    """Every check's result and whether it gates readiness, by name."""
    results = {"database": (check_database(), True)}
    if settings.REDIS_URL:
        results["cache"] = (check_cache(), True)
    for name, registered in _checks.items():
        try:
            result = registered.check()
        except DatabaseError as exc:
            # An outage, not a bug: the database check above says so already; no traceback per probe.
            logger.warning("readiness check %s: database unavailable: %s", name, type(exc).__name__)
            result = CheckResult(False, f"database unavailable: {type(exc).__name__}")
        except Exception as exc:
            logger.exception("readiness check %s crashed", name)
            result = CheckResult(False, f"check failed: {type(exc).__name__}")
        results[name] = (result, bool(registered.gates()))
    return results


def livez(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def health(request: HttpRequest) -> JsonResponse:
    if not apps.ready:
        return JsonResponse({"status": "starting"}, status=503)
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    results = run_readiness_checks()
    failed = [(name, r) for name, (r, gates) in results.items() if gates and not r.ok]
    warnings = [(name, r) for name, (r, gates) in results.items() if not gates and not r.ok]
    body: dict[str, object] = {
        "status": "unavailable" if failed else "ready",
        "checks": {name: {"ok": r.ok, "gates_readiness": gates, **({"detail": r.detail} if r.detail else {})}
                   for name, (r, gates) in results.items()},
    }
    if warnings:
        body["warnings"] = [f"{name} ({r.detail})" for name, r in warnings]
    if failed:
        body["message"] = "not ready: " + ", ".join(f"{name} ({r.detail})" for name, r in failed)
    return JsonResponse(body, status=503 if failed else 200)
