"""The shared cache (Redis in tests): values round-trip, and one client object serves every call."""

from django.core.cache import cache


def test_values_round_trip_through_redis():
    cache.set("gx-test", {"n": 1}, timeout=5)
    assert cache.get("gx-test") == {"n": 1}
    assert cache.add("gx-counter", 0) is True
    assert cache.incr("gx-counter") == 1


def test_each_cache_call_reuses_the_same_redis_client():
    client = cache._cache.get_client()
    assert cache._cache.get_client("other-key") is client
    assert cache._cache.get_client(write=True) is client
