"""Rate limits that fail open when the shared cache (Redis) is unreachable.

A throttle guards capacity, not money or secrets: while Redis restarts, refusing every request (500, or 429 for
everyone) would turn a cache outage into an API outage. So an unreachable cache lets the request through,
logged and counted in ``cache_errors_total{use="throttle"}``. What must not fail open, the login lockout, fails
closed instead (identity/lockout.py).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from gxbackend.cache import CACHE_ERRORS

logger = logging.getLogger("gxbackend.throttling")


class FailOpenRateThrottle(SimpleRateThrottle):
    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError as exc:
            CACHE_ERRORS.labels("throttle").inc()
            logger.warning("throttle %s: cache unreachable (%s), request let through",
                           getattr(self, "scope", "?"), type(exc).__name__)
            return True
