"""The real ``manage.py run_projector`` in child processes: kill -9 mid-block and before COMMIT, failover.

The crash points come from the documented test-only hook ``GX_PROJECTOR_CRASH_AT=<point>:<block>``
(projector/services.py), honoured only with DEBUG on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from conftest import free_port
from projector.models import Transaction
from projector.services import get_checkpoint
from projector.tests.conftest import snapshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class ProjectorProcess:
    def __init__(self, env: dict[str, str], **extra: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_projector", "--metrics-port", str(self.port)],
            cwd=django_settings.BASE_DIR, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)

    def role(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as response:
                return json.loads(response.read())["detail"]
        except Exception:
            return "unreachable"

    def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"projector did not exit: {self.output()}") from None

    def output(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        return self.process.communicate()[0][-3000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait_exit(30)


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def projector_env(subprocess_env, devnet):
    return {**subprocess_env, **devnet.env(), "PROJECTOR_HEIGHT_POLL_SECONDS": "0.2",
            "PROJECTOR_RETRY_BASE_SECONDS": "0.1", "PROJECTOR_RETRY_MAX_SECONDS": "0.5",
            "PROJECTOR_STANDBY_POLL_SECONDS": "0.2", "LOG_LEVEL": "WARNING"}


def caught_up(chain) -> bool:
    return get_checkpoint().block_number >= chain.height()


def test_kill_9_before_commit_and_mid_block_loses_and_doubles_nothing(make_user, chain, projector_env):
    users = [make_user() for _ in range(4)]
    for user in users:
        chain.create_user(user)
    chain.transfer(users[0], users[1], 5_000_000)
    chain.transfer(users[2], users[3], 150_000_000)
    chain.freeze(users[1])
    height = chain.height()

    crash_block = 2  # the second user's CreateUser (one transaction per block: submitted one at a time)
    first = ProjectorProcess(projector_env, GX_PROJECTOR_CRASH_AT=f"before_commit:{crash_block}")
    assert first.wait_exit() == -signal.SIGKILL, first.output()
    assert get_checkpoint().block_number == crash_block  # block 1 committed, block 2 rolled back entirely
    assert not Transaction.objects.filter(block_number=crash_block).exists()

    mid_block = height - 2  # the second transfer
    second = ProjectorProcess(projector_env, GX_PROJECTOR_CRASH_AT=f"mid_block:{mid_block}")
    assert second.wait_exit() == -signal.SIGKILL, second.output()
    assert get_checkpoint().block_number == mid_block
    assert not Transaction.objects.filter(block_number=mid_block).exists()

    third = ProjectorProcess(projector_env)
    try:
        wait_for(lambda: caught_up(chain), "the restarted projector to catch up")
    finally:
        assert third.stop() == 0
    after_restarts = snapshot()
    assert len(after_restarts["transactions"]) == 4 + 3 + 3  # 4 genesis, 2 x SENT+RECEIVED+FEE
    call_command("rebuild_projections", idle_timeout=1.0)
    assert snapshot() == after_restarts
    call_command("reconcile_balances")


def test_the_standby_takes_over_from_the_checkpoint_when_the_leader_is_killed(make_user, chain, projector_env):
    users = [make_user() for _ in range(4)]
    a = ProjectorProcess(projector_env)
    b = ProjectorProcess(projector_env)
    try:
        wait_for(lambda: {a.role(), b.role()} == {"leader", "standby"}, "one leader and one standby")
        leader, standby = (a, b) if a.role() == "leader" else (b, a)
        chain.create_user(users[0])
        chain.create_user(users[1])
        wait_for(lambda: caught_up(chain), "the leader to project the first users")
        leader.process.kill()
        leader.process.wait(10)
        chain.create_user(users[2])
        chain.create_user(users[3])
        chain.transfer(users[0], users[3], 9_000_000)
        wait_for(lambda: standby.role() == "leader", "the standby to take over")
        wait_for(lambda: caught_up(chain), "the new leader to catch up")
    finally:
        a.stop() if a.process.poll() is None else None
        b.stop() if b.process.poll() is None else None
    assert Transaction.objects.filter(kind="GENESIS").count() == 4
    assert Transaction.objects.filter(kind__in=["SENT", "RECEIVED", "FEE"]).count() == 3
    call_command("reconcile_balances")
