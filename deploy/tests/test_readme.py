"""The operator's guide names what really exists: alerts, secrets and their keys, commands, files."""

from __future__ import annotations

import re

from deploy.tests.conftest import DEPLOY, ROOT, by_kind, pod_spec
from deploy.tests.test_monitoring import rules

README = (DEPLOY / "README.md").read_text()


def test_it_covers_every_step_the_issue_lists():
    for heading in ("namespace", "secrets", "config", "migrations", "Verify", "Expose", "Metrics and alerts",
                    "Scaling", "Troubleshooting", "rollback", "Cleanup"):
        assert re.search(rf"^## .*{heading}", README, re.MULTILINE | re.IGNORECASE), heading
    for probe in ("/health", "/readyz", "/livez"):
        assert f"curl -s localhost:8080{probe}" in README
    for way in ("NodePort", "LoadBalancer", "Ingress"):
        assert way in README


def test_every_alert_is_explained():
    for rule in rules():
        assert rule["alert"] in README, rule["alert"]


def test_the_secret_keys_it_creates_are_the_ones_the_pods_mount(mainnet):
    keys = set()
    for workload in [d for d in mainnet if d["kind"] in {"Deployment", "Job"}]:
        spec = pod_spec(workload)
        for volume in spec["volumes"]:
            if "secret" in volume:
                keys |= {(volume["secret"]["secretName"], item["key"]) for item in volume["secret"]["items"]}
        for container in spec["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    keys.add((ref["name"], ref["key"]))
    for secret, key in keys:
        assert f"create secret generic {secret}" in README
        assert f"--from-file={key}=" in README or f"--from-literal={key}=" in README, (secret, key)


def test_the_management_commands_and_files_it_names_exist(mainnet):
    from django.core.management import get_commands

    for command in set(re.findall(r"manage\.py (\w+)", README)):
        assert command in get_commands(), command
    for path in set(re.findall(r"deploy/[\w./-]+\.(?:yaml|json|py|sh)", README)):
        assert (ROOT / path).exists(), path
    assert set(by_kind(mainnet, "Deployment")) <= set(re.findall(r"deployment/([\w-]+)", README))
