"""Fixtures shared by every app's tests. Tests run on real PostgreSQL and Redis (see Makefile `test`)."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from gxbackend.testing import free_port  # also re-exported for tests: `from conftest import free_port`


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def subprocess_env(transactional_db) -> dict[str, str]:
    """Environment for a real child process (gunicorn, a worker) that shares this test's database.

    The child sees only committed rows, hence ``transactional_db``.
    """
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        env["DATABASE_URL"] = f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env.update({"DEBUG": "true", "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "gxbackend.settings"})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle and lockout counters live in the shared cache: each test starts from zero."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _stop_progress_listener():
    """A test whose request waited started this process's LISTEN connection: end it with the test (it would keep
    the test database open, and the next test may use another one)."""
    yield
    from gxbackend import progress

    progress.stop_listener()


@pytest.fixture
def unreachable_cache(settings):
    """The shared cache pointed at a Redis port nothing listens on: Redis is down for this test."""
    settings.CACHES = {"default": {
        "BACKEND": "gxbackend.cache.GxRedisCache", "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }}
