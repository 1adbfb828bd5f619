"""Operators' requeue against devnet: every kind of dead letter finishes after a requeue, with one effect.

One test per class of outcome the dead letter's last transaction had: a tx id burned by a validation code
(any non-VALID code), a read conflict that exhausted the budget, a transaction whose outcome was never learned,
and an envelope the orderer refused.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from fabric_client import EcdsaSigner
from fabric_client.tests.conftest import invalid_copy
from identity.models import User
from outbox.models import CommandStatus, OutboxCommand
from outbox.services import outbox_requeue
from outbox.tests.conftest import GENESIS, attempt, balance, created_user, enqueue_transfer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_outbox")]


def next_endorsement_rewritten(fabric, monkeypatch, rewrite) -> None:
    """The next transaction the submitter endorses comes back as ``rewrite(transaction)`` (once)."""
    real = fabric.contract.new_proposal

    def new_proposal(*args, **kwargs):
        monkeypatch.setattr(fabric.contract, "new_proposal", real)
        proposal = real(*args, **kwargs)
        endorse = proposal.endorse
        proposal.endorse = lambda **options: rewrite(endorse(**options))
        return proposal

    monkeypatch.setattr(fabric.contract, "new_proposal", new_proposal)


def assert_committed_once(fabric, command: OutboxCommand, alice: str, bob: str, amount: int) -> None:
    command.refresh_from_db()
    assert (command.status, command.validation_code, command.dead_lettered) == (
        CommandStatus.COMMITTED, "VALID", False)
    assert (balance(fabric, alice), balance(fabric, bob)) == (GENESIS - amount, GENESIS + amount)


@pytest.mark.parametrize("code_name", ["BAD_PAYLOAD", "BAD_RWSET", "ENDORSEMENT_POLICY_FAILURE", "BAD_PROPOSAL_TXID"])
def test_a_tx_id_burned_by_a_validation_code_is_dead_lettered_and_a_requeue_makes_a_new_transaction(
    fabric, monkeypatch, code_name
):
    alice, bob = created_user(fabric), created_user(fabric)
    command = enqueue_transfer(alice, bob, 2500)
    next_endorsement_rewritten(fabric, monkeypatch, lambda t: invalid_copy(fabric.gateway, t, code_name))
    assert attempt(command, fabric) == "failed"
    command.refresh_from_db()
    assert (command.status, command.validation_code, command.dead_lettered) == (CommandStatus.FAILED, code_name, True)
    burned = command.tx_id

    assert outbox_requeue(command_ids=[command.id]) == 1
    command.refresh_from_db()
    assert (command.status, command.tx_id, command.signed_envelope) == (CommandStatus.PENDING, "", None)
    assert attempt(command, fabric) == "committed"
    assert_committed_once(fabric, command, alice, bob, 2500)
    assert command.tx_id not in ("", burned)


def test_a_read_conflict_that_used_up_the_budget_gets_a_new_transaction_on_requeue(fabric, monkeypatch):
    alice, bob, carol = created_user(fabric), created_user(fabric), created_user(fabric)
    command = enqueue_transfer(alice, carol, 1000)
    OutboxCommand.objects.filter(id=command.id).update(max_attempts=1)
    conflicted: list[str] = []

    def conflicting_transfer_commits_first(point: str) -> None:
        if point == "after_endorse" and not conflicted:
            conflicted.append(OutboxCommand.objects.get(id=command.id).tx_id)
            assert fabric.contract.new_proposal("TokenomicsContract:TransferWithFees", args=[
                bob, carol, "7", "", "", "other"]).endorse().submit().status().successful

    monkeypatch.setattr("outbox.submitter.crash_point", conflicting_transfer_commits_first)
    assert attempt(command, fabric) == "failed"
    command.refresh_from_db()
    assert (command.status, command.validation_code, command.dead_lettered) == (
        CommandStatus.FAILED, "MVCC_READ_CONFLICT", True)

    assert outbox_requeue(command_ids=[command.id]) == 1
    assert attempt(command, fabric) == "committed"
    command.refresh_from_db()
    assert command.status == CommandStatus.COMMITTED and command.tx_id not in ("", conflicted[0])
    assert (balance(fabric, alice), balance(fabric, carol)) == (GENESIS - 1000, GENESIS + 1007)


def test_a_transaction_whose_outcome_was_never_learned_is_resumed_with_the_same_envelope(fabric, settings):
    alice, bob = created_user(fabric), created_user(fabric)
    command = enqueue_transfer(alice, bob, 2500)
    OutboxCommand.objects.filter(id=command.id).update(max_attempts=1)
    settings.FABRIC_COMMIT_STATUS_TIMEOUT = 0.001  # CommitStatus gives up before the block is cut
    assert attempt(command, fabric) == "failed"
    command.refresh_from_db()
    assert (command.status, command.dead_lettered, command.validation_code) == (CommandStatus.FAILED, True, "")
    assert command.signed_envelope and "DEADLINE_EXCEEDED" in command.error_message
    submitted = command.tx_id

    settings.FABRIC_COMMIT_STATUS_TIMEOUT = 5.0
    assert outbox_requeue(command_ids=[command.id]) == 1
    command.refresh_from_db()
    assert (command.status, command.tx_id) == (CommandStatus.SUBMITTED, submitted)
    assert attempt(command, fabric) == "committed"
    assert_committed_once(fabric, command, alice, bob, 2500)  # it had committed: resubmitting moved nothing
    assert command.tx_id == submitted


def test_an_envelope_the_orderer_refused_is_dropped_and_a_requeue_makes_a_new_transaction(fabric, settings,
                                                                                         monkeypatch):
    from fabric_protos.gateway import gateway_pb2

    signer = EcdsaSigner.from_pem_file(settings.FABRIC_KEY_PATH)

    def signed_over_other_bytes(transaction):
        prepared = gateway_pb2.PreparedTransaction.FromString(transaction.bytes())
        prepared.envelope.signature = signer(b"\x01" * 32)  # a valid signature, of something else
        return fabric.gateway.transaction_from_bytes(prepared.SerializeToString())

    alice, bob = created_user(fabric), created_user(fabric)
    command = enqueue_transfer(alice, bob, 2500)
    next_endorsement_rewritten(fabric, monkeypatch, signed_over_other_bytes)
    assert attempt(command, fabric) == "failed"
    command.refresh_from_db()
    assert (command.status, command.dead_lettered, command.signed_envelope) == (CommandStatus.FAILED, True, None)
    assert "orderer refused" in command.error_message and command.tx_id  # kept for the record

    assert outbox_requeue(command_ids=[command.id]) == 1
    command.refresh_from_db()
    assert (command.status, command.tx_id) == (CommandStatus.PENDING, "")
    assert attempt(command, fabric) == "committed"
    assert_committed_once(fabric, command, alice, bob, 2500)


def test_the_admin_requeue_action_gives_a_burned_dead_letter_a_new_transaction(fabric, monkeypatch, client):
    staff = User.objects.create_superuser(email="ops@example.com", password="x-very-long-password-9")
    client.force_login(staff)
    alice, bob = created_user(fabric), created_user(fabric)
    command = enqueue_transfer(alice, bob, 2500)
    next_endorsement_rewritten(fabric, monkeypatch, lambda t: invalid_copy(fabric.gateway, t, "BAD_RWSET"))
    assert attempt(command, fabric) == "failed"

    response = client.post("/admin/outbox/outboxcommand/", {"action": "requeue", "_selected_action": [command.id]},
                           follow=True)
    assert response.status_code == 200 and "Requeued 1 command(s)" in response.content.decode()
    command.refresh_from_db()
    assert (command.status, command.tx_id, command.next_attempt_at <= timezone.now()) == (
        CommandStatus.PENDING, "", True)
    assert attempt(command, fabric) == "committed"
    assert_committed_once(fabric, command, alice, bob, 2500)
