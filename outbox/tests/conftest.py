"""Fixtures of the outbox tests: commands, an in-process devnet wired into settings, submitter processes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from gxbackend.testing import ROOT, free_port
from outbox.models import OutboxCommand
from outbox.services import outbox_enqueue

_numbers = itertools.count(1)
GENESIS = 500_000_000


def new_user_id() -> str:
    return f"{os.getpid():08x}{next(_numbers):024x}"


def create_user_payload(user_id: str, nationality: str = "NG") -> dict:
    return {"user_id": user_id, "biometric_hash": f"{int(user_id, 16):064x}", "nationality": nationality, "age": 30}


def queue_indexes() -> set[str]:
    """The outbox's indexes of every user's unfinished commands in enqueue order (the claim's), by definition."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'outbox_outboxcommand' "
                       "AND indexdef LIKE '%%USING btree (id) WHERE%%'")
        return {name for (name,) in cursor.fetchall()}


def enqueue_create_user(user_id: str | None = None, **kwargs) -> OutboxCommand:
    user_id = user_id or new_user_id()
    with transaction.atomic():
        return outbox_enqueue(command_type="CREATE_USER", aggregate_id=user_id,
                              payload=create_user_payload(user_id), **kwargs)


def enqueue_transfer(from_id: str, to_id: str, amount: int, **kwargs) -> OutboxCommand:
    with transaction.atomic():
        return outbox_enqueue(command_type="TRANSFER", aggregate_id=from_id,
                              payload={"from_user_id": from_id, "to_user_id": to_id, "amount_qirat": amount},
                              **kwargs)


def attempt(command: OutboxCommand, fabric, worker: str = "w1") -> str:
    """Claims ``command`` (making it due first) and makes one attempt at it."""
    from outbox.services import outbox_claim
    from outbox.submitter import process_command

    OutboxCommand.objects.filter(id=command.id).update(next_attempt_at=timezone.now(), locked_until=None)
    assert command.id in outbox_claim(worker_id=worker, limit=100), "command not claimable"
    return process_command(command.id, worker_id=worker, fabric=fabric)


def created_user(fabric) -> str:
    """A user created on the chain through the outbox (500 GX genesis balance)."""
    user_id = new_user_id()
    assert attempt(enqueue_create_user(user_id), fabric) == "committed"
    return user_id


def commit_command(command: OutboxCommand, block_number: int, tx_id: str = "e" * 64) -> None:
    """Takes ``command`` through claim, endorsement and commit in ``block_number``, as a submitter would."""
    from outbox.services import outbox_claim, outbox_record_committed, outbox_record_endorsed

    outbox_claim(worker_id="w", limit=10)
    outbox_record_endorsed(command_id=command.id, worker_id="w", tx_id=tx_id, envelope=b"e")
    outbox_record_committed(command_id=command.id, worker_id="w", block_number=block_number, result=None)


def projected_until(block_number: int) -> None:
    """The projector's checkpoint after applying ``block_number`` (its next block to read is one more), with the
    notification the projector sends in its block transaction."""
    from gxbackend import progress
    from projector.models import Checkpoint
    from projector.services import CHECKPOINT_NAME

    with transaction.atomic():
        Checkpoint.objects.update_or_create(name=CHECKPOINT_NAME, defaults={"block_number": block_number + 1})
        progress.notify_checkpoint(block_number + 1)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Polls ``predicate`` until true; fails with ``what`` (evaluated lazily if callable) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting until {what}")


@pytest.fixture
def fast_outbox(settings):
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 0.05
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 0.2
    settings.OUTBOX_LEASE_SECONDS = 5
    settings.FABRIC_COMMIT_STATUS_TIMEOUT = 5.0
    return settings


@pytest.fixture
def devnet(tmp_path: Path, settings):
    """An in-process devnet with 50 ms blocks, and settings pointing at it."""
    from fabric_client.devnet import DevnetServer

    server = DevnetServer(tmp_path / "devnet", port=0, block_timeout=0.05).start()
    for name, value in server.env().items():
        setattr(settings, name, value)
    settings.FABRIC_TLS_CA_PATH = None
    yield server
    server.stop(grace=0)


@pytest.fixture
def fabric(devnet):
    from outbox.submitter import Fabric

    target = Fabric.from_settings()
    yield target
    target.gateway.close()


def balance(fabric, user_id: str) -> int:
    return int(fabric.contract.evaluate("TokenomicsContract:GetBalance", user_id).decode())


# --- real processes ----------------------------------------------------------------------------------------
@pytest.fixture
def devnet_process(tmp_path: Path):
    """Devnet as a child process with 50 ms blocks (it can be stopped and restarted on the same port)."""
    from fabric_client.devnet.process import DevnetProcess

    process = DevnetProcess(tmp_path / "devnet", block_timeout_ms=50, block_size=50).start()
    yield process
    process.kill()


class SubmitterProcess:
    def __init__(self, env: dict[str, str], log_path: Path, crash_at: str | None = None) -> None:
        self.metrics_port = free_port()
        env = dict(env)
        if crash_at:
            env["GX_SUBMITTER_CRASH_AT"] = crash_at
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_submitter", "--metrics-port", str(self.metrics_port)],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"submitter exited with {self.process.returncode}: {self.output()[-3000:]}")
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False
        wait_until(ready, timeout, "the submitter answers /readyz")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()
        self.log.close()


@pytest.fixture
def submitter_env(subprocess_env, devnet_process) -> dict[str, str]:
    env = dict(subprocess_env)
    env.update(devnet_process.env)
    env.pop("FABRIC_TLS_CA_PATH", None)
    env.update({
        "OUTBOX_LEASE_SECONDS": "3", "OUTBOX_BACKOFF_BASE_SECONDS": "0.1", "OUTBOX_BACKOFF_MAX_SECONDS": "1",
        "OUTBOX_POLL_INTERVAL": "0.5", "OUTBOX_MAX_IN_FLIGHT": "16", "OUTBOX_MAX_ATTEMPTS": "30",
        "FABRIC_COMMIT_STATUS_TIMEOUT": "2", "FABRIC_ENDORSE_TIMEOUT": "2", "FABRIC_SUBMIT_TIMEOUT": "2",
        "OUTBOX_SHUTDOWN_GRACE_SECONDS": "5", "LOG_LEVEL": "WARNING",
    })
    return env


@pytest.fixture
def start_submitter(submitter_env, tmp_path: Path) -> Iterator[Callable[..., SubmitterProcess]]:
    started: list[SubmitterProcess] = []

    def start(crash_at: str | None = None, wait: bool = True, **extra_env: str) -> SubmitterProcess:
        process = SubmitterProcess({**submitter_env, **extra_env}, tmp_path / f"submitter-{len(started)}.log",
                                   crash_at)
        started.append(process)
        if wait:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()
