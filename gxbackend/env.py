"""Strict settings helpers: every value comes from the environment, a bad value stops start-up.

Each helper raises :class:`ImproperlyConfigured` with a one-line message that names the variable, so
``manage.py`` and gunicorn exit non-zero with a line an operator can act on. Secrets may also be given as a
file (``NAME_FILE``), the way Kubernetes mounts them.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        if required:
            raise ImproperlyConfigured(f"{name} is required: set the environment variable {name}")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be <= {maximum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated IP networks (``10.0.0.0/8, 2001:db8::/32``; a bare address is a /32 or /128).

    Strict: host bits set (``10.0.0.5/8``), a malformed entry or a network holding every address (``0.0.0.0/0``,
    ``::/0``, which would trust any client) stop start-up. Unset or empty: no network.
    """
    networks = []
    for item in env_list(name, []):
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name} must be comma-separated IP networks (CIDR), got {item!r}: {exc}") \
                from None
        if network.prefixlen == 0:
            raise ImproperlyConfigured(f"{name} must not contain {item!r}: it would trust every address")
        networks.append(network)
    return tuple(networks)


def env_secret(name: str, *, required: bool, min_length: int = 0, default: str | None = None) -> str | None:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE``; never echoed in errors."""
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE")
    if not value and file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points to an unreadable file: {exc.strerror}") from None
    if not value:
        if required:
            raise ImproperlyConfigured(f"{name} is required when DEBUG is off: set {name} or {name}_FILE")
        return default
    if len(value) < min_length:
        raise ImproperlyConfigured(f"{name} must be at least {min_length} characters long")
    return value


def parse_database_url(name: str, url: str) -> dict:
    """``postgres://user:pass@host:port/db?sslmode=require`` → a Django DATABASES entry (PostgreSQL only)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(f"{name} must be a postgres:// URL, got scheme {parts.scheme!r}")
    db_name = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not db_name:
        raise ImproperlyConfigured(f"{name} must name a host and a database: postgres://user:pass@host:5432/db")
    try:
        port = parts.port or 5432
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port") from None
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db_name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port),
        "OPTIONS": options,
    }


def validate_redis_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"{name} must be a redis:// or rediss:// URL, got scheme {parts.scheme!r}")
    return url
