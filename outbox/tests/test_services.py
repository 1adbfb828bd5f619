"""Enqueue validation, NOTIFY, the claim query (order, leases, SKIP LOCKED), backoff and outcome records."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from gxbackend.exceptions import ValidationFailed
from outbox.models import CommandStatus, OutboxCommand
from outbox.services import (
    LeaseLost,
    backoff_seconds,
    outbox_claim,
    outbox_enqueue,
    outbox_record_committed,
    outbox_record_endorsed,
    outbox_record_failed,
    outbox_record_retry,
    outbox_release,
    outbox_requeue,
)
from outbox.tests.conftest import create_user_payload, enqueue_create_user, enqueue_transfer, new_user_id

pytestmark = pytest.mark.django_db


# --- enqueue --------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_enqueue_outside_the_callers_transaction():
    user_id = new_user_id()
    with pytest.raises(RuntimeError, match="inside the caller's transaction"):
        outbox_enqueue(command_type="CREATE_USER", aggregate_id=user_id, payload=create_user_payload(user_id))


@pytest.mark.parametrize(("command_type", "payload", "bad_field"), [
    ("CREATE_USER", {"user_id": "U", "biometric_hash": "AB" * 32, "nationality": "NG", "age": 30},
     "payload.biometric_hash"),
    ("CREATE_USER", {"user_id": "U", "biometric_hash": "ab" * 32, "nationality": "ng", "age": 30},
     "payload.nationality"),
    ("CREATE_USER", {"user_id": "U", "biometric_hash": "ab" * 32, "nationality": "NG", "age": 151}, "payload.age"),
    ("CREATE_USER", {"user_id": "U", "biometric_hash": "ab" * 32, "nationality": "NG"}, "payload.age"),
    ("TRANSFER", {"from_user_id": "U", "to_user_id": "V", "amount_qirat": 0}, "payload.amount_qirat"),
    ("TRANSFER", {"from_user_id": "U", "to_user_id": "V", "amount_qirat": "1.5"}, "payload.amount_qirat"),
    ("TRANSFER", {"from_user_id": "U", "to_user_id": "U", "amount_qirat": 5}, "payload.to_user_id"),
    ("TRANSFER", {"from_user_id": "U", "to_user_id": "V", "amount_qirat": 5, "remark": "x" * 141}, "payload.remark"),
    ("TRANSFER", {"from_user_id": "U", "to_user_id": "V", "amount_qirat": 5, "fee": 1}, "payload.fee"),
    ("FREEZE_WALLET", {"user_id": "U", "reason": ""}, "payload.reason"),
    ("UNFREEZE_WALLET", {"user_id": "U V"}, "payload.user_id"),
    ("UNFREEZE_WALLET", {"user_id": "SYSTEM_GENESIS_POOL"}, "payload.user_id"),
    ("CREATE_USER", {"user_id": "W", "biometric_hash": "ab" * 32, "nationality": "NG", "age": 3}, "aggregate_id"),
])
def test_a_bad_payload_is_the_callers_error_and_rolls_back_the_callers_transaction(command_type, payload, bad_field):
    aggregate = "SYSTEM_GENESIS_POOL" if payload.get("user_id") == "SYSTEM_GENESIS_POOL" else "U"
    with pytest.raises(ValidationFailed) as caught, transaction.atomic():
        outbox_enqueue(command_type=command_type, aggregate_id=aggregate, payload=payload)
    assert bad_field in caught.value.fields
    assert not OutboxCommand.objects.exists()


def test_it_stores_integers_as_the_chaincodes_decimal_strings():
    user_id = new_user_id()
    command = enqueue_create_user(user_id)
    transfer = enqueue_transfer(user_id, new_user_id(), 2_500_000)
    assert command.payload["age"] == "30"
    assert transfer.payload == {"from_user_id": user_id, "to_user_id": transfer.payload["to_user_id"],
                                "amount_qirat": "2500000", "tx_type": "", "remark": ""}


@pytest.mark.django_db(transaction=True)
def test_enqueue_notifies_the_submitters_when_the_callers_transaction_commits():
    import psycopg

    params = {k: v for k, v in connection.get_connection_params().items()
              if k not in ("cursor_factory", "context", "prepare_threshold")}
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute("LISTEN outbox_command")
        with transaction.atomic():
            user_id = new_user_id()
            outbox_enqueue(command_type="CREATE_USER", aggregate_id=user_id, payload=create_user_payload(user_id))
            assert list(listener.notifies(timeout=0.2)) == []  # not before commit
        assert [n.channel for n in listener.notifies(timeout=2.0, stop_after=1)] == ["outbox_command"]


# --- claim ----------------------------------------------------------------------------------------------------
def test_only_the_earliest_unfinished_command_of_a_user_is_claimable():
    alice, bob = new_user_id(), new_user_id()
    a1 = enqueue_create_user(alice)
    a2 = enqueue_transfer(alice, bob, 10)
    b1 = enqueue_create_user(bob)
    assert outbox_claim(worker_id="w1", limit=10) == [a1.id, b1.id]
    assert outbox_claim(worker_id="w2", limit=10) == []  # a2 waits behind a1, which w1 holds
    outbox_record_endorsed(command_id=a1.id, worker_id="w1", tx_id="t" * 64, envelope=b"env")
    outbox_record_committed(command_id=a1.id, worker_id="w1", block_number=3, result={"v": 1})
    assert outbox_claim(worker_id="w2", limit=10) == [a2.id]


def test_a_failed_command_no_longer_blocks_its_users_next_command():
    alice = new_user_id()
    a1 = enqueue_create_user(alice)
    a2 = enqueue_transfer(alice, new_user_id(), 10)
    assert outbox_claim(worker_id="w1", limit=10) == [a1.id]
    outbox_record_failed(command_id=a1.id, worker_id="w1", error="[USER_EXISTS] taken", chaincode_code="USER_EXISTS")
    assert outbox_claim(worker_id="w1", limit=10) == [a2.id]


def test_a_retry_waits_for_its_backoff_and_keeps_later_commands_of_its_user_waiting(fast_outbox):
    alice = new_user_id()
    a1 = enqueue_create_user(alice)
    enqueue_transfer(alice, new_user_id(), 10)
    outbox_claim(worker_id="w1", limit=10)
    assert outbox_record_retry(command_id=a1.id, worker_id="w1", error="UNAVAILABLE", new_transaction=True)
    assert outbox_claim(worker_id="w1", limit=10) == []
    OutboxCommand.objects.filter(id=a1.id).update(next_attempt_at=timezone.now())
    assert outbox_claim(worker_id="w1", limit=10) == [a1.id]
    assert OutboxCommand.objects.get(id=a1.id).attempts == 2


def test_an_expired_lease_is_taken_over_and_the_old_holder_can_no_longer_write():
    a1 = enqueue_create_user()
    outbox_claim(worker_id="w1", limit=1)
    outbox_record_endorsed(command_id=a1.id, worker_id="w1", tx_id="a" * 64, envelope=b"signed")
    OutboxCommand.objects.filter(id=a1.id).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert outbox_claim(worker_id="w2", limit=1) == [a1.id]
    with pytest.raises(LeaseLost):
        outbox_record_committed(command_id=a1.id, worker_id="w1", block_number=1, result=None)
    row = OutboxCommand.objects.get(id=a1.id)
    assert (row.status, row.locked_by, row.tx_id, bytes(row.signed_envelope)) == (
        CommandStatus.SUBMITTED, "w2", "a" * 64, b"signed")


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_never_get_the_same_command():
    for _ in range(40):
        enqueue_create_user()
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claim(worker: str) -> None:
        barrier.wait()
        mine: list[int] = []
        while ids := outbox_claim(worker_id=worker, limit=3):
            mine.extend(ids)
        claimed[worker] = mine
        connection.close()

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [pk for ids in claimed.values() for pk in ids]
    assert sorted(every) == sorted(OutboxCommand.objects.values_list("id", flat=True))
    assert len(every) == len(set(every))


def test_handing_a_lease_back_makes_the_command_claimable_at_once_without_counting_an_attempt():
    a1 = enqueue_create_user()
    outbox_claim(worker_id="w1", limit=1)
    assert outbox_release(worker_id="w1", ids=[a1.id]) == 1
    assert outbox_claim(worker_id="w2", limit=1) == [a1.id]
    assert OutboxCommand.objects.get(id=a1.id).attempts == 1


# --- backoff and dead letters ---------------------------------------------------------------------------------
def test_backoff_doubles_per_attempt_up_to_the_cap_with_jitter(settings):
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 1.0
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 30.0
    rng = random.Random(7)
    for attempts, full in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)]:
        delays = [backoff_seconds(attempts, rng=rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # jittered, not one fixed value


def test_it_dead_letters_after_max_attempts_keeping_the_stored_envelope(fast_outbox):
    fast_outbox.OUTBOX_MAX_ATTEMPTS = 2
    a1 = enqueue_create_user()
    outbox_claim(worker_id="w1", limit=1)
    outbox_record_endorsed(command_id=a1.id, worker_id="w1", tx_id="b" * 64, envelope=b"signed")
    assert outbox_record_retry(command_id=a1.id, worker_id="w1", error="commit status: DEADLINE_EXCEEDED",
                               new_transaction=False)
    OutboxCommand.objects.filter(id=a1.id).update(next_attempt_at=timezone.now())
    outbox_claim(worker_id="w1", limit=1)
    assert not outbox_record_retry(command_id=a1.id, worker_id="w1", error="commit status: DEADLINE_EXCEEDED",
                                   new_transaction=False)
    row = OutboxCommand.objects.get(id=a1.id)
    assert (row.status, row.dead_lettered, row.attempts, row.tx_id) == (CommandStatus.FAILED, True, 2, "b" * 64)
    assert "gave up after 2 attempts" in row.error_message

    # Requeued, it resumes the same transaction instead of making a second one.
    assert outbox_requeue(command_ids=[a1.id]) == 1
    row.refresh_from_db()
    assert (row.status, row.dead_lettered, row.attempts, row.tx_id) == (CommandStatus.SUBMITTED, False, 0, "b" * 64)


def test_requeue_of_a_chaincode_failure_starts_a_fresh_transaction():
    a1 = enqueue_create_user()
    outbox_claim(worker_id="w1", limit=1)
    outbox_record_failed(command_id=a1.id, worker_id="w1", error="[USER_EXISTS] x", chaincode_code="USER_EXISTS")
    enqueue_create_user()  # not failed: untouched
    assert outbox_requeue(failed=True) == 1
    row = OutboxCommand.objects.get(id=a1.id)
    assert (row.status, row.chaincode_code, row.attempts) == (CommandStatus.PENDING, "", 0)
