"""checkov on deploy/: no failed check except those listed, with their reasons, in deploy/checkov-skips.yaml.

checkov lives in its own virtualenv (.venv-tools/, made by deploy/tools/checkov.sh on first use and reused),
because its pinned dependency tree would clash with the project's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.tests.conftest import DEPLOY, ROOT

SKIPS = DEPLOY / "checkov-skips.yaml"


def skips() -> list[dict[str, str]]:
    return yaml.safe_load(SKIPS.read_text())


def test_every_skipped_check_has_a_reason():
    for entry in skips():
        assert set(entry) == {"id", "check", "reason"}, entry
        assert entry["id"].startswith("CKV") and len(entry["reason"]) > 40, entry


@pytest.mark.slow
def test_checkov_finds_no_unlisted_failure():
    # kubectl (kustomize) from this virtualenv renders the overlays for checkov's kustomize framework.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    ids = ",".join(entry["id"] for entry in skips())
    result = subprocess.run(
        [str(DEPLOY / "tools" / "checkov.sh"), "-d", "deploy",
         "--framework", "kubernetes", "kustomize", "dockerfile", "secrets",
         "--skip-check", ids, "--compact", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, f"checkov failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
