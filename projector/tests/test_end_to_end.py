"""The money flow end to end, with real processes: the API (in-process test client), ``manage.py run_submitter``
and ``manage.py run_projector`` as child processes, and devnet (a Gateway gRPC server running the GX contract).

register ×2 → KYC ×2 → approve ×2 → CreateUser on chain → ACTIVE, 500 GX, GENESIS → POST /transfers →
COMMITTED → balances and SENT/RECEIVED/FEE rows as docs/CHAINCODE.md's fee → replayed key: same command, nothing
moves → the chain's own refusal lands on the command (FAILED, WALLET_FROZEN) → frozen recipient: 409 before
enqueue → unfrozen again.

Every wait is bounded and fails with what it was waiting for and the workers' logs; nothing asserts timing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from gxbackend.models import IdempotencyRecord
from gxbackend.testing import ROOT, free_port, http_get
from identity import services as identity_services
from identity.models import KycSubmission, ProfileStatus, UserProfile
from outbox.models import CommandStatus, CommandType, OutboxCommand
from outbox.tests.conftest import SubmitterProcess
from projector.transfers import transfer_fee_qirat, wallet_freeze, wallet_unfreeze

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GX = 1_000_000
GENESIS = 500 * GX
PASSWORD = "correct-horse-battery-9"
TIMEOUT = 60.0


class ProjectorProcess:
    """``manage.py run_projector`` with its output in a file (a pipe nobody reads could fill and block it)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_projector", "--metrics-port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"run_projector exited with {self.process.returncode}: {self.output()}")
        try:
            return http_get(f"http://127.0.0.1:{self.port}/readyz", timeout=1)[0] == 200
        except OSError:
            return False

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def workers(devnet, subprocess_env, tmp_path):
    """run_submitter and run_projector against the in-process devnet, both ready; stopped afterwards."""
    env = {**subprocess_env, **devnet.env(), "LOG_LEVEL": "WARNING",
           "OUTBOX_LEASE_SECONDS": "5", "OUTBOX_BACKOFF_BASE_SECONDS": "0.1", "OUTBOX_BACKOFF_MAX_SECONDS": "1",
           "OUTBOX_POLL_INTERVAL": "0.5", "FABRIC_COMMIT_STATUS_TIMEOUT": "5", "FABRIC_ENDORSE_TIMEOUT": "5",
           "FABRIC_SUBMIT_TIMEOUT": "5", "OUTBOX_SHUTDOWN_GRACE_SECONDS": "5",
           "PROJECTOR_HEIGHT_POLL_SECONDS": "0.2", "PROJECTOR_RETRY_BASE_SECONDS": "0.1",
           "PROJECTOR_RETRY_MAX_SECONDS": "0.5", "PROJECTOR_STANDBY_POLL_SECONDS": "0.2"}
    submitter = SubmitterProcess(env, tmp_path / "submitter.log")
    projector = ProjectorProcess(env, tmp_path / "projector.log")
    try:
        submitter.wait_ready()
        wait_until(projector.ready, "run_projector answers /readyz as leader", lambda: projector.output())
        yield submitter, projector
    finally:
        projector.stop()
        submitter.stop()


def wait_until(predicate: Callable[[], object], what: str, diagnose: Callable[[], str] = lambda: "",
               timeout: float = TIMEOUT) -> object:
    """Polls ``predicate`` until it returns something truthy (returned); fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting until {what}\n{diagnose()}")


# --- API helpers ----------------------------------------------------------------------------------------------
class Person:
    def __init__(self, client, email: str, nationality: str) -> None:
        self.client, self.email = client, email
        created = client.post("/api/v1/users", {
            "email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Obi",
            "date_of_birth": "1990-05-17", "nationality": nationality}, format="json")
        assert created.status_code == 201, created.json()
        self.id = created.json()["id"]
        login = client.post("/api/v1/auth/login", {"email": email, "password": PASSWORD}, format="json")
        assert login.status_code == 200, login.json()
        self.auth = {"HTTP_AUTHORIZATION": f"Bearer {login.json()['access']}"}

    def submit_kyc(self) -> None:
        response = self.client.post(f"/api/v1/users/{self.id}/kyc", {
            "document_type": "PASSPORT", "document_number": "A1234567", "issuing_country": "NG",
            "expiry_date": (timezone.localdate() + timedelta(days=365)).isoformat(),
            "document_sha256": hashlib.sha256(f"doc {self.email}".encode()).hexdigest(),
            "biometric_hash": hashlib.sha256(f"bio {self.email}".encode()).hexdigest()}, format="json", **self.auth)
        assert response.status_code == 202, response.json()

    def get(self, path: str) -> dict:
        response = self.client.get(path, **self.auth)
        assert response.status_code == 200, (path, response.json())
        return response.json()

    def wallet(self) -> dict:
        return self.get(f"/api/v1/users/{self.id}/wallet")

    def rows(self) -> list[dict]:
        return self.get(f"/api/v1/users/{self.id}/transactions")["results"]

    def transfer(self, body: dict, key: str | None = None):
        headers = {**self.auth, **({"HTTP_IDEMPOTENCY_KEY": key} if key else {})}
        return self.client.post("/api/v1/transfers", body, format="json", **headers)

    def profile_status(self) -> str:
        return UserProfile.objects.get(user_id=self.id).status


def wait_for_command(person: Person, status_url: str, final: str, diagnose: Callable[[], str]) -> dict:
    def done() -> dict | None:
        state = person.get(status_url)
        if state["status"] in (CommandStatus.COMMITTED, CommandStatus.FAILED):
            assert state["status"] == final, state
            return state
        return None
    return wait_until(done, f"the command at {status_url} is {final}", diagnose)


# --- the flow -------------------------------------------------------------------------------------------------
def test_end_to_end_register_approve_transfer_replay_and_freeze(workers, api_client, django_user_model):
    submitter, projector = workers

    def logs() -> str:
        commands = list(OutboxCommand.objects.values_list("command_type", "status", "chaincode_code",
                                                          "error_message"))
        return (f"commands: {commands}\n--- submitter ---\n{submitter.output()[-3000:]}\n"
                f"--- projector ---\n{projector.output()}")

    # Two people register and submit KYC through the API; a reviewer approves both (CREATE_USER enqueued).
    ada = Person(api_client, "ada.e2e@example.com", "NG")
    bola = Person(api_client, "bola.e2e@example.com", "DE")
    for person in (ada, bola):
        person.submit_kyc()
    reviewer = django_user_model.objects.create_superuser("reviewer.e2e@example.com", "reviewer-password-1")
    for submission in KycSubmission.objects.all():
        identity_services.kyc_approve(submission_id=submission.pk, reviewer=reviewer)
    assert {ada.profile_status(), bola.profile_status()} == {ProfileStatus.APPROVED_PENDING_ONCHAIN}

    # The submitter creates them on chain; the projector makes them ACTIVE with 500 GX and a GENESIS row.
    wait_until(lambda: ada.profile_status() == bola.profile_status() == ProfileStatus.ACTIVE,
               "both profiles are ACTIVE", logs)
    for person in (ada, bola):
        assert person.wallet()["balance_qirat"] == str(GENESIS)
        assert person.wallet()["balance"] == "500.000000"
        assert [(r["kind"], r["amount_qirat"]) for r in person.rows()] == [("GENESIS", str(GENESIS))]

    # Ada sends Bola 12.5 GX: NG → DE is cross-border, 15 bps.
    amount = 12_500_000
    fee = transfer_fee_qirat(amount_qirat=amount, cross_border=True)
    assert fee == 18_750
    body = {"to_user_id": bola.id, "amount": "12.5", "remark": "e2e rent"}
    accepted = ada.transfer(body, key="e2e-transfer-1")
    assert accepted.status_code == 202, accepted.json()
    assert accepted.json()["fee_qirat"] == str(fee)
    status_url = accepted.json()["status_url"]
    committed = wait_for_command(ada, status_url, CommandStatus.COMMITTED, logs)
    assert committed["tx_id"] and committed["block_number"] is not None and committed["validation_code"] == "VALID"

    ada_after, bola_after = GENESIS - amount - fee, GENESIS + amount
    wait_until(lambda: ada.wallet()["balance_qirat"] == str(ada_after)
               and bola.wallet()["balance_qirat"] == str(bola_after), "the projector applies the transfer", logs)
    tx_id = committed["tx_id"]
    ada_rows = {(r["kind"], r["amount_qirat"], r["fee_qirat"], r["tx_id"]) for r in ada.rows()}
    assert ada_rows == {("GENESIS", str(GENESIS), "0", genesis_tx(ada)),
                        ("SENT", str(amount), str(fee), tx_id), ("FEE", str(fee), "0", tx_id)}
    bola_rows = [(r["kind"], r["amount_qirat"], r["counterparty_id"], r["remark"]) for r in bola.rows()]
    assert bola_rows[0] == ("RECEIVED", str(amount), UserProfile.objects.get(user_id=ada.id).onchain_user_id,
                            "e2e rent")

    # The same Idempotency-Key again: the same command, no new command, no money moves.
    replay = ada.transfer(body, key="e2e-transfer-1")
    assert replay.status_code == 202
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["command_id"] == accepted.json()["command_id"]
    IdempotencyRecord.objects.all().delete()  # even with the API's record gone, the outbox row answers
    assert ada.transfer(body, key="e2e-transfer-1").json()["command_id"] == accepted.json()["command_id"]
    assert OutboxCommand.objects.filter(command_type=CommandType.TRANSFER).count() == 1
    assert (ada.wallet()["balance_qirat"], bola.wallet()["balance_qirat"]) == (str(ada_after), str(bola_after))

    # The chain has the last word: with the projector paused, the read model still says Bola is ACTIVE, so the
    # API accepts a transfer to her after her freeze committed; the chaincode refuses it, and the command says so.
    projector.pause()
    try:
        freeze = wallet_freeze(user_id=bola.id, reason="e2e investigation", actor=reviewer)
        wait_until(lambda: OutboxCommand.objects.get(pk=freeze.pk).status == CommandStatus.COMMITTED,
                   "FREEZE_WALLET is COMMITTED", logs)
        assert bola.profile_status() == ProfileStatus.ACTIVE
        refused_on_chain = ada.transfer({"to_user_id": bola.id, "amount": "1"})
        assert refused_on_chain.status_code == 202, refused_on_chain.json()
        failed = wait_for_command(ada, refused_on_chain.json()["status_url"], CommandStatus.FAILED, logs)
        assert failed["chaincode_code"] == "WALLET_FROZEN"
    finally:
        projector.resume()

    # Once the projector has seen WalletFrozen, the API refuses before enqueueing.
    wait_until(lambda: bola.profile_status() == ProfileStatus.FROZEN and bola.wallet()["frozen"],
               "Bola's profile is FROZEN", logs)
    assert bola.wallet()["frozen_reason"] == "e2e investigation"
    commands_before = OutboxCommand.objects.count()
    refused = ada.transfer({"to_user_id": bola.id, "amount": "1"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "wallet_frozen"
    assert OutboxCommand.objects.count() == commands_before
    assert (ada.wallet()["balance_qirat"], bola.wallet()["balance_qirat"]) == (str(ada_after), str(bola_after))

    # And back: unfreezing makes her ACTIVE again.
    wallet_unfreeze(user_id=bola.id, actor=reviewer)
    wait_until(lambda: bola.profile_status() == ProfileStatus.ACTIVE and not bola.wallet()["frozen"],
               "Bola's profile is ACTIVE again", logs)


def genesis_tx(person: Person) -> str:
    return next(r["tx_id"] for r in person.rows() if r["kind"] == "GENESIS")
