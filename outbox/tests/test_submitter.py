"""One attempt at one command against a real devnet: outcomes, error classes, resume after a crash."""

from __future__ import annotations

import pytest
from django.utils import timezone

from outbox.models import CommandStatus, OutboxCommand
from outbox.tests.conftest import GENESIS, balance, created_user, enqueue_create_user, enqueue_transfer, new_user_id
from outbox.tests.conftest import attempt as run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_outbox")]


class Crash(Exception):
    pass


def test_it_commits_a_command_and_records_tx_id_block_and_the_chaincode_result(fabric):
    user_id = new_user_id()
    command = enqueue_create_user(user_id)
    assert run(command, fabric) == "committed"
    command.refresh_from_db()
    assert command.status == CommandStatus.COMMITTED
    assert len(command.tx_id) == 64 and command.block_number >= 1 and command.validation_code == "VALID"
    assert command.result["userId"] == user_id and command.result["balance"] == str(GENESIS)
    assert (command.attempts, command.locked_by) == (1, "")
    assert balance(fabric, user_id) == GENESIS


def test_a_chaincode_error_fails_the_command_after_one_attempt_with_its_code(fabric):
    alice, bob = created_user(fabric), created_user(fabric)
    command = enqueue_transfer(alice, bob, GENESIS + 1)
    assert run(command, fabric) == "failed"
    command.refresh_from_db()
    assert (command.status, command.attempts, command.chaincode_code, command.dead_lettered) == (
        CommandStatus.FAILED, 1, "INSUFFICIENT_FUNDS", False)
    assert command.error_message.startswith("[INSUFFICIENT_FUNDS]")
    assert command.tx_id == ""  # nothing was submitted
    assert balance(fabric, alice) == GENESIS


def test_an_mvcc_conflict_is_retried_under_a_new_tx_id_and_then_commits(fabric, monkeypatch):
    alice, bob, carol = created_user(fabric), created_user(fabric), created_user(fabric)
    command = enqueue_transfer(alice, carol, 1000)
    first_tx: list[str] = []

    def conflicting_transfer_commits_first(point: str) -> None:
        # Our transfer is endorsed on carol's current balance; another transfer to carol commits before ours
        # is submitted, so ours is validated against a stale read.
        if point == "after_endorse" and not first_tx:
            first_tx.append(OutboxCommand.objects.get(id=command.id).tx_id)
            status = (fabric.contract.new_proposal("TokenomicsContract:TransferWithFees",
                                                   args=[bob, carol, "7", "", "", "other"]).endorse().submit().status())
            assert status.successful

    monkeypatch.setattr("outbox.submitter.crash_point", conflicting_transfer_commits_first)
    assert run(command, fabric) == "retried"
    command.refresh_from_db()
    assert (command.status, command.validation_code, command.tx_id) == (CommandStatus.PENDING, "MVCC_READ_CONFLICT", "")
    assert run(command, fabric) == "committed"
    command.refresh_from_db()
    assert command.status == CommandStatus.COMMITTED and command.attempts == 2
    assert command.tx_id not in ("", first_tx[0])
    assert (balance(fabric, alice), balance(fabric, carol)) == (GENESIS - 1000, GENESIS + 1007)


@pytest.mark.parametrize("crash_at", ["after_endorse", "after_submit"])
def test_after_a_crash_the_next_submitter_resubmits_the_stored_envelope_and_the_effect_happens_once(
    fabric, monkeypatch, crash_at
):
    alice, bob = created_user(fabric), created_user(fabric)
    command = enqueue_transfer(alice, bob, 2500)

    def crash(point: str) -> None:
        if point == crash_at:
            raise Crash(point)

    monkeypatch.setattr("outbox.submitter.crash_point", crash)
    with pytest.raises(Crash):
        run(command, fabric, worker="crashed")
    stored = OutboxCommand.objects.get(id=command.id)
    assert stored.status == CommandStatus.SUBMITTED and stored.signed_envelope

    monkeypatch.undo()
    # The crashed worker's lease expires; another worker takes the row over.
    assert run(command, fabric, worker="w2") == "committed"
    command.refresh_from_db()
    assert command.tx_id == stored.tx_id  # the same transaction, never a second one
    assert (command.attempts, command.status) == (2, CommandStatus.COMMITTED)
    assert (balance(fabric, alice), balance(fabric, bob)) == (GENESIS - 2500, GENESIS + 2500)


def test_when_the_peer_is_unreachable_the_command_is_retried_with_backoff(fabric, devnet):
    command = enqueue_create_user()
    devnet.stop(grace=0)
    before = timezone.now()
    assert run(command, fabric) == "retried"
    command.refresh_from_db()
    assert command.status == CommandStatus.PENDING and command.next_attempt_at > before
    assert "UNAVAILABLE" in command.error_message
