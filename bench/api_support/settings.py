"""The project's settings with the bench-only URLconf, which adds the bare reference view."""

from gxbackend.settings import *  # noqa: F403 - the real settings, unchanged but for the URLconf

ROOT_URLCONF = "bench.api_support.urls"
