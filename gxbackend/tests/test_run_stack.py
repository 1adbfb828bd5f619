"""`make run`'s supervisor on the embedded default: SQLite, local memory, devnet; Ctrl-C stops everything."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gxbackend.testing import ROOT, free_port, http_get, wait_for_http

pytestmark = pytest.mark.slow


def test_run_stack_serves_the_api_and_workers_on_sqlite_and_stops_all_children_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"}}
    api, submitter, projector = free_port(), free_port(), free_port()
    env.update({
        "DEBUG": "true", "GX_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING",
        "FABRIC_PEER_ENDPOINT": f"127.0.0.1:{free_port()}",
        "SUBMITTER_METRICS_PORT": str(submitter), "PROJECTOR_METRICS_PORT": str(projector),
    })
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180)
    assert migrate.returncode == 0, migrate.stderr
    stack = subprocess.Popen([sys.executable, "manage.py", "run_stack", "--api-port", str(api)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{api}/health", timeout=90, process=stack)
        assert http_get(f"http://127.0.0.1:{api}/health")[0] == 200
        # The workers start beside the API: wait until each answers on its own port.
        wait_for_http(f"http://127.0.0.1:{projector}/readyz", timeout=60, process=stack)
        wait_for_http(f"http://127.0.0.1:{submitter}/livez", timeout=60, process=stack)
        status, body = http_get(f"http://127.0.0.1:{api}/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"]["database"]["ok"] is True
        assert http_get(f"http://127.0.0.1:{submitter}/livez")[0] == 200
        assert (tmp_path / "gxbackend.sqlite3").exists() and (tmp_path / "devnet" / "ledger.sqlite3").exists()
        assert len(processes_with_env(f"GX_VAR_DIR={tmp_path}")) >= 5  # supervisor, devnet, api, 2 workers
    finally:
        stack.send_signal(signal.SIGINT)
        output, _ = stack.communicate(timeout=90)
    assert stack.returncode == 0, output
    assert f"http://127.0.0.1:{api}/api/docs/" in output
    assert processes_with_env(f"GX_VAR_DIR={tmp_path}") == [], "every child process stopped"


def processes_with_env(entry: str) -> list[int]:
    """PIDs whose environment holds ``entry`` (the children inherit the test's unique GX_VAR_DIR)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("variable", ["FABRIC_PEER_ENDPOINT", "API_PORT", "SUBMITTER_METRICS_PORT",
                                      "PROJECTOR_METRICS_PORT"])
def test_run_stack_refuses_a_taken_port_in_one_line_naming_it_and_its_variable(tmp_path, variable):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"}}
    env.update({
        "DEBUG": "true", "GX_VAR_DIR": str(tmp_path), "FABRIC_PEER_ENDPOINT": f"127.0.0.1:{free_port()}",
        "SUBMITTER_METRICS_PORT": str(free_port()), "PROJECTOR_METRICS_PORT": str(free_port()),
        "WORKER_METRICS_HOST": "127.0.0.1",
    })
    api_port = free_port()
    with socket.socket() as holder:  # someone else's server on the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        if variable == "API_PORT":
            api_port = taken
        else:
            env[variable] = f"127.0.0.1:{taken}" if variable == "FABRIC_PEER_ENDPOINT" else str(taken)
        result = subprocess.run([sys.executable, "manage.py", "run_stack", "--api-port", str(api_port)], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {taken} " in lines[0] and variable in lines[0]
    assert not (tmp_path / "devnet").exists(), "devnet was started although a port was taken"


def test_make_run_passes_api_port():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^API_PORT \?= 3001$", makefile, re.MULTILINE)
    assert "run_stack --api-port $(API_PORT)" in makefile
