"""Production refuses to start misconfigured, with one line naming the variable (docs/DESIGN.md §6)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "DEBUG": "false",
    "DJANGO_SECRET_KEY": "k" * 60,
    "JWT_SECRET": "j" * 40,
    "ALLOWED_HOSTS": "api.example.com",
    "DATABASE_URL": "postgres://gx:pw@db.example.com:5432/gx",
}


def manage_check(env_changes: dict[str, str | None], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JWT_", "FABRIC_", "OUTBOX_"))}
    env.pop("REDIS_URL", None)
    env.update(GOOD)
    env["GX_VAR_DIR"] = str(tmp_path)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "CRITICAL"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )


def test_a_complete_production_configuration_starts(tmp_path):
    result = manage_check({}, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"JWT_SECRET": None}, "JWT_SECRET"),
        ({"JWT_SECRET": "too-short-secret"}, "JWT_SECRET"),
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://gx@db/gx"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://db.example.com"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"OUTBOX_MAX_ATTEMPTS": "ten"}, "OUTBOX_MAX_ATTEMPTS"),
        ({"PROJECTION_LAG_THRESHOLD_BLOCKS": "-1"}, "PROJECTION_LAG_THRESHOLD_BLOCKS"),
        ({"TRUSTED_PROXY_CIDRS": "10.0.0.0/33"}, "TRUSTED_PROXY_CIDRS"),
        ({"TRUSTED_PROXY_CIDRS": "10.0.0.5/8"}, "TRUSTED_PROXY_CIDRS"),  # host bits set: a typo, not a network
        ({"TRUSTED_PROXY_CIDRS": "10.0.0.0/8,ingress"}, "TRUSTED_PROXY_CIDRS"),
        ({"TRUSTED_PROXY_CIDRS": "0.0.0.0/0"}, "TRUSTED_PROXY_CIDRS"),  # would trust every client
        ({"TRUSTED_PROXY_COUNT": "1"}, "TRUSTED_PROXY_CIDRS"),  # retired: says what replaces it
        ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_misconfiguration_stops_start_up_with_one_line_naming_the_variable(changes, variable, tmp_path):
    result = manage_check(changes, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error:") and variable in lines[0]
    # A secret's value is never echoed back.
    for secret in ("too-short-secret",):
        assert secret not in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    secret_file = tmp_path / "jwt"
    secret_file.write_text("f" * 48 + "\n")
    assert manage_check({"JWT_SECRET": None, "JWT_SECRET_FILE": str(secret_file)}, tmp_path).returncode == 0
    missing = manage_check({"JWT_SECRET": None, "JWT_SECRET_FILE": str(tmp_path / "absent")}, tmp_path)
    assert missing.returncode == 2 and "JWT_SECRET_FILE" in missing.stderr


def test_database_and_redis_urls_can_come_from_files(tmp_path):
    url_file = tmp_path / "database-url"
    url_file.write_text("postgres://gx:pw@db.example.com:5432/gx\n")
    assert manage_check({"DATABASE_URL": None, "DATABASE_URL_FILE": str(url_file)}, tmp_path).returncode == 0
    bad = tmp_path / "redis-url"
    bad.write_text("http://cache:6379")
    result = manage_check({"REDIS_URL_FILE": str(bad)}, tmp_path)
    assert result.returncode == 2 and "REDIS_URL" in result.stderr


def test_development_runs_on_sqlite_and_local_memory_without_any_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({"DEBUG": "true", "GX_VAR_DIR": str(tmp_path)})
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "django.core.cache.backends.locmem.LocMemCache"]
