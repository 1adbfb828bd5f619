"""/livez, /health and /readyz as docs/DESIGN.md §5 defines them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port
from gxbackend.health import CheckResult, register_readiness_check

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def test_livez_and_health_answer_200(api_client):
    assert api_client.get("/livez").json() == {"status": "ok"}
    assert api_client.get("/health").status_code == 200


@pytest.mark.parametrize("path", ["/health", "/livez", "/readyz", "/metrics"])
def test_probes_and_metrics_answer_a_pods_ip_that_allowed_hosts_does_not_list(api_client, settings, path):
    # A kubelet probes (and Prometheus scrapes) a pod at its IP; ALLOWED_HOSTS holds the public names only.
    settings.ALLOWED_HOSTS = ["api.gx.example", "svc-identity"]
    assert api_client.get(path, HTTP_HOST="10.244.1.7:3001").status_code == 200
    # Everything else is still host-checked.
    assert api_client.get("/api/v1/users/me", HTTP_HOST="10.244.1.7:3001").status_code == 400
    assert api_client.post(path, HTTP_HOST="10.244.1.7:3001").status_code == 400


def test_readyz_is_200_when_database_and_cache_answer(api_client, settings):
    response = api_client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["cache"]["ok"] is True  # tests run with REDIS_URL set


def test_a_failing_gating_check_makes_readyz_503_naming_it(api_client, monkeypatch):
    from gxbackend import health

    monkeypatch.setattr(health, "_checks", dict(health._checks))
    register_readiness_check("search_index", lambda: CheckResult(False, "index unreachable"))
    response = api_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["search_index"] == {"ok": False, "gates_readiness": True, "detail": "index unreachable"}
    assert "search_index" in body["message"]


def test_a_failing_check_that_does_not_gate_is_a_warning_and_the_pod_stays_ready(api_client, monkeypatch):
    from gxbackend import health

    monkeypatch.setattr(health, "_checks", dict(health._checks))
    register_readiness_check("search_index", lambda: CheckResult(False, "index unreachable"), gates=lambda: False)
    response = api_client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and "message" not in body
    assert body["checks"]["search_index"] == {"ok": False, "gates_readiness": False, "detail": "index unreachable"}
    assert body["warnings"] == ["search_index (index unreachable)"]


def test_a_check_that_meets_a_database_outage_is_reported_without_a_traceback(api_client, monkeypatch, caplog):
    from django.db import OperationalError

    from gxbackend import health

    def lag() -> CheckResult:
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_checks", dict(health._checks))
    register_readiness_check("projection_lag", lag)
    with caplog.at_level("WARNING", logger="gxbackend.health"):
        response = api_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["projection_lag"]["detail"] == "database unavailable: OperationalError"
    records = [r for r in caplog.records if r.name == "gxbackend.health"]
    assert [r.levelname for r in records] == ["WARNING"] and records[0].exc_info is None


def probe_in_process(base_env: dict[str, str], env_changes: dict[str, str]) -> dict[str, tuple[int, dict]]:
    """Starts a separate Django process with the given environment and probes it with the test client."""
    env = dict(base_env, **env_changes)
    code = (
        "import json, django; django.setup()\n"
        "from django.test import Client\n"
        "c = Client()\n"
        "print(json.dumps({p: [r.status_code, r.json()] for p in ('/livez', '/readyz') for r in [c.get(p)]}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return {path: tuple(value) for path, value in json.loads(result.stdout.splitlines()[-1]).items()}


def test_readyz_is_503_naming_the_database_when_it_is_unreachable_and_livez_stays_200(subprocess_env):
    closed = free_port()
    probes = probe_in_process(subprocess_env, {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed}/gx"})
    assert probes["/livez"][0] == 200
    status, body = probes["/readyz"]
    assert status == 503
    assert body["checks"]["database"]["ok"] is False
    assert "database" in body["message"]


def test_readyz_is_503_naming_the_cache_when_redis_is_unreachable(subprocess_env):
    closed = free_port()
    probes = probe_in_process(subprocess_env, {"REDIS_URL": f"redis://127.0.0.1:{closed}/0"})
    status, body = probes["/readyz"]
    assert status == 503
    assert body["checks"]["cache"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
