"""Django's Redis cache with one client object per connection pool instead of one per operation.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` for every cache call; redis-py's client
constructor registers ~170 response callbacks, about 0.3 ms of CPU each time here. Throttles and the login
lockout touch the cache on every request. A ``redis.Redis`` is thread-safe (it borrows a connection from its
pool per command), so one per pool serves all of a process's threads.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from prometheus_client import Counter

CACHE_ERRORS = Counter(
    "cache_errors_total", "Cache (Redis) calls that failed, by use: throttle (let through), lockout (login 503).",
    ["use"],
)


class PooledClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class GxRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = PooledClientRedisCacheClient
