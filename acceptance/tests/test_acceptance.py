"""The small acceptance run (``ACCEPTANCE_SCALE=small``: 30 people, 300 transfers, every fault) inside make test.

It runs ``python -m acceptance`` as a subprocess: its own PostgreSQL cluster, Redis and devnet, the real
gunicorn, submitters and projectors, faults injected under load; the run exits non-zero on any failed check.
"""

import os
import signal
import subprocess
import sys

import pytest

from gxbackend.testing import ROOT

pytestmark = pytest.mark.slow


def test_under_every_fault_nothing_is_lost_or_doubled_and_the_books_balance():
    env = {**os.environ, "ACCEPTANCE_SCALE": "small"}
    env.pop("ACCEPTANCE_FAULTS", None)  # every fault
    run = subprocess.Popen([sys.executable, "-m", "acceptance"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = run.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGTERM)  # it stops its PostgreSQL, Redis, devnet and workers before exiting
        stdout, stderr = run.communicate(timeout=120)
        pytest.fail(f"the acceptance run did not finish in 15 minutes:\n{stdout}\n{stderr[-6000:]}")
    report = stdout + "\n" + stderr[-6000:]
    assert run.returncode == 0, report
    lines = stdout.splitlines()
    for expected in ("lost = 0", "doubled = 0", "faults injected = 6 of 6", "acceptance = ok",
                     "check reconcile_balances exits 0 = ok",
                     "check supply conserved: read model balances + fees = genesis total = ok",
                     "check each user's commands committed in enqueue order = ok",
                     "check no 5xx outside the PostgreSQL restart = ok",
                     "check /readyz went 503 during the PostgreSQL outage and back to 200 = ok"):
        assert expected in lines, report
