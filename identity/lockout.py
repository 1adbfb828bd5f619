"""Login lockout keyed by (email, client IP), with a delay that doubles, kept in the shared cache (Redis).

After ``LOGIN_LOCKOUT_THRESHOLD`` failed logins for one email from one IP, further attempts from that IP for that
email are refused (429, ``Retry-After``) for ``LOGIN_LOCKOUT_BASE_SECONDS``; every further failure after a lock
expires doubles the delay, up to ``LOGIN_LOCKOUT_MAX_SECONDS``. The failure count is forgotten after
``LOGIN_LOCKOUT_WINDOW_SECONDS`` without a failure, and a successful login clears it. Keying on the pair (as
django-axes' ``[["username", "ip_address"]]``) means an attacker cannot lock a victim out from everywhere, and
unknown emails are counted exactly like known ones (no account probing through the lockout). The email part of
the key is :func:`identity.emails.email_key`, so spelling one address differently (case, ``ſ`` for ``s``, quotes,
a zero-width space) is still the same pair. The API's login and the admin's share these counters.

When the cache (Redis) is unreachable the lockout fails **closed**: :func:`check` cannot tell whether the pair
is locked, so logins answer 503 ``login_unavailable`` (``Retry-After``) until it is back, rather than letting an
attacker guess without limit during the outage. Tokens already issued keep working and refresh does not go
through the lockout, so people already signed in do not notice. Recording a failure or a success is best
effort (a failure to record is logged and counted in ``cache_errors_total{use="lockout"}``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from gxbackend.cache import CACHE_ERRORS
from gxbackend.exceptions import ServiceUnavailable
from identity.emails import email_key

logger = logging.getLogger("identity.lockout")


class LoginUnavailable(ServiceUnavailable):
    code = "login_unavailable"
    retry_after = 5

    def __init__(self) -> None:
        super().__init__("Sign-in is briefly unavailable; retry in a few seconds. Signed-in sessions are not affected.")


def _cache_failed(action: str, exc: Exception) -> None:
    CACHE_ERRORS.labels("lockout").inc()
    logger.warning("login lockout: cache unreachable while %s (%s)", action, type(exc).__name__)


def _now() -> float:
    # One seam for tests: the lock decision uses this clock, never the cache's TTL.
    return time.time()


def _keys(email: str, ip: str) -> tuple[str, str]:
    # email_key drops surrogates and the like, so the encoding below cannot fail on any JSON string.
    digest = hashlib.sha256(f"{email_key(email)}\x00{ip}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}", f"login-locked-until:{digest}"


def check(*, email: str, ip: str) -> tuple[int, bool]:
    """``(seconds until this (email, IP) may try again or 0, whether failures are on record)`` in one round trip."""
    failures_key, lock_key = _keys(email, ip)
    try:
        found = cache.get_many([failures_key, lock_key])
    except RedisError as exc:
        _cache_failed("checking", exc)
        raise LoginUnavailable() from exc
    locked_until = found.get(lock_key)
    remaining = float(locked_until) - _now() if locked_until is not None else 0.0
    return (math.ceil(remaining) if remaining > 0 else 0), bool(found.get(failures_key))


def seconds_locked(*, email: str, ip: str) -> int:
    """Seconds until this (email, IP) may try again; 0 when it is not locked."""
    return check(email=email, ip=ip)[0]


def record_failure(*, email: str, ip: str) -> int:
    """Counts a failed login; returns the lock delay it started in seconds (0 when below the threshold)."""
    try:
        return _record_failure(email=email, ip=ip)
    except RedisError as exc:
        _cache_failed("recording a failure", exc)
        return 0


def _record_failure(*, email: str, ip: str) -> int:
    failures_key, lock_key = _keys(email, ip)
    window = settings.LOGIN_LOCKOUT_WINDOW_SECONDS
    cache.add(failures_key, 0, timeout=window)
    failures = cache.incr(failures_key)  # atomic on Redis: parallel failures are all counted
    cache.touch(failures_key, timeout=window)
    threshold = settings.LOGIN_LOCKOUT_THRESHOLD
    if failures < threshold:
        return 0
    delay = min(settings.LOGIN_LOCKOUT_MAX_SECONDS, settings.LOGIN_LOCKOUT_BASE_SECONDS * 2 ** (failures - threshold))
    cache.set(lock_key, _now() + delay, timeout=delay + 1)
    cache.touch(failures_key, timeout=max(window, delay + 1))
    return delay


def record_success(*, email: str, ip: str) -> None:
    try:
        cache.delete_many(list(_keys(email, ip)))
    except RedisError as exc:
        _cache_failed("clearing failures", exc)
