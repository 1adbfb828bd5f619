"""Alerts, ServiceMonitors and the dashboard use names the code really exports: checked on real scrapes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.tests.conftest import MONITORING, ROOT, by_kind
from gxbackend.testing import free_port, http_get, running_gunicorn, stop_process, wait_for_http

# Series Prometheus makes itself for every target.
SYNTHETIC = {"up"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan", "le",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, grouping labels, ranges and strings removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = match.group()
        following = expr[match.end():].lstrip()[:1]
        if following == "(" or word.lower() in PROMQL_WORDS:
            continue  # a function or an operator
        names.add(word)
    return names


def test_promql_metric_names_finds_only_metrics():
    expr = ('sum by (status) (rate(http_requests_total{job="x", status=~"5.."}[5m])) / '
            'histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) > 0.05 and on() max(up) < 1')
    assert promql_metric_names(expr) == {"http_requests_total", "x_bucket", "up"}


def rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    templating = [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    # Grafana's label_values(metric, label): the metric is PromQL, the label is not a metric.
    templating = [re.sub(r"label_values\(\s*(.+?)\s*,\s*\w+\s*\)", r"\1", q) for q in templating]
    return exprs + templating


def referenced_names() -> set[str]:
    names = set()
    for expr in [r["expr"] for r in rules()] + dashboard_exprs():
        names |= promql_metric_names(expr)
    return names


def test_the_rule_has_the_seed_alerts_and_dead_letters_and_stuck():
    by_name = {r["alert"]: r for r in rules()}
    expectations = {
        "GxOutboxQueueBacklog": ("outbox_queue_depth", "> 1000", "5m"),
        "GxProjectorLag": ("projector_lag_blocks", "> 100", "2m"),
        "GxApiHighErrorRate": ("http_requests_total", "> 0.05", "2m"),
        "GxOutboxDeadLetters": ("outbox_dead_letters", "> 0", None),
        "GxProjectorStuck": ("projector_stuck", "> 0", None),
    }
    for alert, (metric, threshold, duration) in expectations.items():
        rule = by_name[alert]
        assert metric in rule["expr"] and threshold in rule["expr"], alert
        if duration:
            assert rule["for"] == duration, alert
    assert 'status=~"5.."' in by_name["GxApiHighErrorRate"]["expr"]
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))


def test_the_dashboard_is_grafana_json_for_the_three_processes():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["svc-identity (API)", "outbox-submitter", "projector"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_service_monitors_scrape_the_metrics_services(mainnet):
    services = by_kind(mainnet, "Service")
    for monitor in by_kind(mainnet, "ServiceMonitor").values():
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()]
        assert len(matched) == 1, monitor["metadata"]["name"]
        port_names = {p["name"] for p in matched[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    # The rules' job labels are the names of those Services (the Prometheus Operator's default job label).
    jobs = {m for r in rules() for m in re.findall(r'job="([^"]+)"', r["expr"])}
    assert jobs <= set(services)
    dashboard = by_kind(mainnet, "ConfigMap")["gxbackend-grafana-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def exported_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def series_names(text: str) -> set[str]:
    """Names of the series a scrape carries (samples, not the HELP/TYPE of empty families)."""
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


# Each process exports its own series only: e.g. projector_* gauges in the API (zeros, one series per gunicorn
# worker) would be noise and would keep `absent(projector_is_leader)` from ever firing.
OWN_PREFIX = {"svc-identity": "http_", "outbox-submitter": "outbox_", "projector": "projector_"}


def scrape_until(url: str, wanted: set[str], process: subprocess.Popen, timeout: float = 60.0) -> set[str]:
    """Scrapes until every ``wanted`` name shows up (gauges are set after the first unit) or time runs out."""
    wait_for_http(url, process=process, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(url)
        assert status == 200
        names = exported_names(body.decode())
        if wanted <= names or time.monotonic() > deadline or process.poll() is not None:
            return names
        time.sleep(0.5)


def run_worker(command: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", command, "--metrics-port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_every_metric_name_in_the_rules_and_the_dashboard_is_in_a_real_scrape(subprocess_env, tmp_path):
    from fabric_client.devnet.process import DevnetProcess

    wanted = referenced_names() - SYNTHETIC
    scraped: dict[str, set[str]] = {}
    series: dict[str, set[str]] = {}

    # The API under gunicorn in multiprocess mode, as in the pod; HOME is watched: nothing may be written there.
    home = tmp_path / "home"
    home.mkdir()
    api_env = dict(subprocess_env, HOME=str(home))
    with running_gunicorn(api_env, workers=2, multiproc_dir=tmp_path / "prom") as base:
        for path in ("/health", "/livez", "/readyz", "/no-such-page"):
            http_get(base + path)
        status, body = http_get(base + "/metrics")
        assert status == 200
        scraped["svc-identity"] = exported_names(body.decode())
        series["svc-identity"] = series_names(body.decode())
    assert list(home.iterdir()) == [], "gunicorn wrote under $HOME (read-only in the pod)"

    with DevnetProcess(tmp_path / "devnet", block_timeout_ms=50) as devnet:
        env = dict(subprocess_env, **devnet.env)
        for name, command, prefix in (("outbox-submitter", "run_submitter", "outbox_"),
                                      ("projector", "run_projector", "projector_")):
            log = tmp_path / f"{name}.log"
            process, base = run_worker(command, env, log)
            try:
                own = {n for n in wanted if n.startswith(prefix)}
                scraped[name] = scrape_until(f"{base}/metrics", own, process)
                series[name] = series_names(http_get(f"{base}/metrics")[1].decode())
                for path in ("/livez", "/readyz", "/health"):
                    assert http_get(base + path)[0] in (200, 503)
                assert http_get(base + "/livez")[0] == 200, log.read_text()
            finally:
                assert stop_process(process) == 0, log.read_text()

    for name, names in scraped.items():
        assert names, f"{name} exported nothing"
    everything = set().union(*scraped.values())
    missing = sorted(wanted - everything)
    assert not missing, f"rules/dashboard use names no process exports: {missing}"
    assert {n for n in wanted if n.startswith("http_")} <= scraped["svc-identity"]
    assert {n for n in wanted if n.startswith("outbox_")} <= scraped["outbox-submitter"]
    assert {n for n in wanted if n.startswith("projector_")} <= scraped["projector"]
    for name, names in series.items():
        assert any(n.startswith(OWN_PREFIX[name]) for n in names), f"{name} exports none of its own series"
        foreign = sorted(n for n in names if n.startswith(tuple(OWN_PREFIX.values()))
                         and not n.startswith(OWN_PREFIX[name]))
        assert not foreign, f"{name} exports another process's series: {foreign}"
