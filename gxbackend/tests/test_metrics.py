"""/metrics exports the names the alert rules use, and stays right with several gunicorn workers."""

import re
import urllib.request

import pytest

from gxbackend.testing import http_get, running_gunicorn

pytestmark = pytest.mark.django_db


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[line.index("{"):line.index("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_requests_are_counted_by_method_route_and_status(api_client):
    before = api_client.get("/metrics").content.decode()
    api_client.get("/livez")
    api_client.get("/livez")
    api_client.get("/api/v1/no-such-thing")
    after = api_client.get("/metrics").content.decode()
    ok = {"method": "GET", "route": "livez", "status": "200"}
    missing = {"method": "GET", "route": "unmatched", "status": "404"}
    assert sample(after, "http_requests_total", **ok) - sample(before, "http_requests_total", **ok) == 2
    assert sample(after, "http_requests_total", **missing) - sample(before, "http_requests_total", **missing) == 1
    assert sample(after, "http_request_duration_seconds_count", method="GET", route="livez") >= 2


@pytest.mark.slow
def test_counts_add_up_across_two_gunicorn_workers(subprocess_env, tmp_path):
    multiproc = tmp_path / "prom"
    with running_gunicorn(subprocess_env, workers=2, multiproc_dir=multiproc) as base:
        for _ in range(40):
            # A fresh connection per request, so both workers take a share.
            request = urllib.request.Request(f"{base}/livez", headers={"Connection": "close"})
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
        status, body = http_get(f"{base}/metrics")
        assert status == 200
        text = body.decode()
        writers = {path.name.split("_")[-1] for path in multiproc.glob("counter_*.db")}
    assert len(writers) >= 2, "more than one process wrote samples"
    assert sample(text, "http_requests_total", method="GET", route="livez", status="200") == 40
