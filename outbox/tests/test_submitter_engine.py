"""The Submitter engine in this process, on committed PostgreSQL rows and a devnet: claims of its own rows,
threads that fail, the batched row writer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import DatabaseError, DataError, transaction
from django.utils import timezone

from fabric_client.errors import EvaluateError
from outbox import submitter as engine
from outbox.models import CommandStatus, OutboxCommand
from outbox.services import (
    outbox_claim_commands,
    outbox_record_committed,
    outbox_record_endorsed,
    outbox_record_retry,
)
from outbox.submitter import DbWriter, Submitter, WriteTimeout
from outbox.tests.conftest import balance, enqueue_create_user, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_outbox")]


def statuses(commands) -> list[str]:
    by_id = dict(OutboxCommand.objects.filter(id__in=[c.id for c in commands]).values_list("id", "status"))
    return [by_id[c.id] for c in commands]


def run_until_committed(submitter: Submitter, commands, timeout: float = 30) -> None:
    def committed() -> bool:
        submitter.submit_once()
        return statuses(commands) == [CommandStatus.COMMITTED] * len(commands)

    wait_until(committed, timeout, lambda: f"every command is COMMITTED (now {statuses(commands)}, "
                                           f"{submitter.in_flight} in flight, {submitter.health()[1]})", 0.05)


# --- fencing: a process never works on one row on two threads ---------------------------------------------
def test_a_submitter_does_not_claim_again_a_row_it_is_still_working_on_when_its_lease_ran_out(fabric, monkeypatch):
    go_on = threading.Event()

    def held_after_the_envelope_store(point: str) -> None:
        if point == "after_endorse":
            assert go_on.wait(30)

    monkeypatch.setattr(engine, "crash_point", held_after_the_envelope_store)
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=4, batch_size=10, lease_seconds=60)
    command = enqueue_create_user()
    assert submitter.submit_once()
    wait_until(lambda: OutboxCommand.objects.get(id=command.id).status == CommandStatus.SUBMITTED, 10,
               "the envelope is stored")
    claimed = OutboxCommand.objects.get(id=command.id)
    # Renewals failed for a whole lease (the database was away): the row looks claimable.
    OutboxCommand.objects.filter(id=command.id).update(locked_until=timezone.now() - timedelta(seconds=1))

    assert submitter.submit_once() is False  # a second thread on the same row would race the first
    again = OutboxCommand.objects.get(id=command.id)
    assert (again.lease_token, again.attempts) == (claimed.lease_token, 1)
    go_on.set()
    run_until_committed(submitter, [command])
    assert OutboxCommand.objects.get(id=command.id).tx_id == claimed.tx_id


def test_a_claim_that_lost_its_row_to_a_newer_claim_of_the_same_worker_writes_nothing(fabric):
    command = enqueue_create_user()
    [old] = outbox_claim_commands(worker_id="w1", limit=1)
    OutboxCommand.objects.filter(id=command.id).update(locked_until=timezone.now() - timedelta(seconds=1))
    [new] = outbox_claim_commands(worker_id="w1", limit=1)  # same worker id, a newer claim
    assert new.lease_token != old.lease_token

    assert engine.process_command(old, worker_id="w1", fabric=fabric) == "lost"  # fenced at the envelope store
    assert engine.process_command(new, worker_id="w1", fabric=fabric) == "committed"
    row = OutboxCommand.objects.get(id=command.id)
    assert (row.status, row.attempts) == (CommandStatus.COMMITTED, 2)
    assert balance(fabric, command.aggregate_id) == 500_000_000  # created once


# --- worker threads whose unit or cleanup fails --------------------------------------------------------------
def failing_worker_cleanup(monkeypatch) -> None:
    """A worker's database cleanup after each unit raises (the connection broke), as does nothing else."""
    real_process, real_release = engine.process_command, engine._release_db
    inside = threading.local()

    def process_command(*args, **kwargs):
        inside.unit = True
        try:
            return real_process(*args, **kwargs)
        finally:
            inside.unit = False

    def release_db() -> None:
        name = threading.current_thread().name
        if name.startswith("submitter-") and "writer" not in name and not getattr(inside, "unit", False):
            raise DatabaseError("connection already closed")
        real_release()

    monkeypatch.setattr(engine, "process_command", process_command)
    monkeypatch.setattr(engine, "_release_db", release_db)


def test_a_worker_whose_cleanup_raises_lets_go_of_its_command_and_goes_on_working(fabric, monkeypatch):
    failing_worker_cleanup(monkeypatch)
    # One worker thread and room for two claimed commands: each finished command must leave the flight.
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=1, batch_size=10, lease_seconds=60)
    commands = [enqueue_create_user() for _ in range(5)]
    run_until_committed(submitter, commands)
    assert submitter.in_flight == 0
    assert submitter.health() == (True, "3 submitter threads ok")  # the worker and the two row writers


def test_a_command_whose_failure_could_not_be_recorded_is_not_leased_for_ever(fabric, monkeypatch):
    failing_worker_cleanup(monkeypatch)
    patched_process = engine.process_command
    failures = {"process": 1, "record": 1}

    def process_command(*args, **kwargs):
        if failures["process"]:
            failures["process"] -= 1
            raise RuntimeError("a bug")
        return patched_process(*args, **kwargs)

    def record_retry(**kwargs):
        if failures["record"]:
            failures["record"] -= 1
            raise DatabaseError("the database is away")
        return outbox_record_retry(**kwargs)

    monkeypatch.setattr(engine, "process_command", process_command)
    monkeypatch.setattr(engine, "outbox_record_retry", record_retry)
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=2, batch_size=10, lease_seconds=2)
    first = enqueue_create_user()
    later = enqueue_create_user(first.aggregate_id + "0")  # another user: independent of the stranded row
    # The failed attempt stays leased to us; once its lease runs out (it is no longer renewed), it is claimed
    # again and commits.
    run_until_committed(submitter, [first, later])
    assert failures == {"process": 0, "record": 0}
    row = OutboxCommand.objects.get(id=first.id)
    assert row.attempts == 2 and submitter.in_flight == 0


# --- the row writer ------------------------------------------------------------------------------------------
def waiting_for_this_transaction() -> bool:
    """Some backend waits for a lock this test's transaction holds."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted "
                       "AND pg_blocking_pids(pid) @> ARRAY[pg_backend_pid()]")
        return cursor.fetchone()[0] > 0


def test_one_failing_write_in_a_batch_fails_alone_and_the_others_are_written():
    commands = [enqueue_create_user() for _ in range(4)]
    claimed = {c.id: c for c in outbox_claim_commands(worker_id="w1", limit=10)}
    writer = DbWriter(name="test-writer", timeout=30)

    def commit(command, result):
        return writer(outbox_record_committed, command_id=command.id, worker_id="w1",
                      lease_token=claimed[command.id].lease_token, block_number=7, result=result)

    with ThreadPoolExecutor(4) as pool:
        with transaction.atomic():
            # The first write waits for this row lock: the next three queue up and go into one batch.
            OutboxCommand.objects.select_for_update().get(id=commands[0].id)
            first = pool.submit(commit, commands[0], {"ok": 0})
            wait_until(waiting_for_this_transaction, 10, "the writer's first batch waits for the row lock")
            rest = [pool.submit(commit, commands[1], {"ok": 1}),
                    pool.submit(commit, commands[2], {"bad": "\x00"}),  # PostgreSQL's jsonb refuses NUL
                    pool.submit(commit, commands[3], {"ok": 3})]
            wait_until(lambda: writer._queue.qsize() == 3, 10, "three writes are queued behind the first")
        assert first.result(timeout=30) is None
        with pytest.raises(DataError):
            rest[1].result(timeout=30)
        assert rest[0].result(timeout=30) is None and rest[2].result(timeout=30) is None

    assert statuses(commands) == [CommandStatus.COMMITTED, CommandStatus.COMMITTED, CommandStatus.PENDING,
                                  CommandStatus.COMMITTED]
    assert OutboxCommand.objects.get(id=commands[3].id).result == {"ok": 3}
    assert writer.watch.problem() is None


def test_writes_that_arrive_while_a_batch_lingers_are_written_in_one_statement(monkeypatch):
    commands = [enqueue_create_user() for _ in range(3)]
    claimed = {c.id: c for c in outbox_claim_commands(worker_id="w1", limit=10)}
    statements: list[int] = []
    many = engine._MANY[outbox_record_committed]

    def counted(writes):
        statements.append(len(writes))
        return many(writes)

    monkeypatch.setitem(engine._MANY, outbox_record_committed, counted)
    writer = DbWriter(name="test-writer", timeout=30, linger=1.0)

    def commit(command):
        return writer(outbox_record_committed, command_id=command.id, worker_id="w1",
                      lease_token=claimed[command.id].lease_token, block_number=7, result=None)

    with ThreadPoolExecutor(3) as pool:
        futures = []
        for command in commands:  # one block's outcomes, arriving a little apart
            futures.append(pool.submit(commit, command))
            time.sleep(0.05)
        assert [f.result(timeout=30) for f in futures] == [None, None, None]
    assert statements == [3]
    assert statuses(commands) == [CommandStatus.COMMITTED] * 3


def test_an_envelope_store_lingers_only_while_other_endorsements_are_on_their_way():
    commands = [enqueue_create_user() for _ in range(3)]
    claimed = {c.id: c for c in outbox_claim_commands(worker_id="w1", limit=10)}
    endorsing = engine.Tally()
    writer = DbWriter(name="test-writer", timeout=60, linger=30.0, expected=lambda: endorsing.value)

    def store(command, *, hold: threading.Event | None = None):
        with endorsing.counted():
            if hold is not None:  # still endorsing
                assert hold.wait(30)
            writer(outbox_record_endorsed, command_id=command.id, worker_id="w1",
                   lease_token=claimed[command.id].lease_token, tx_id=f"{command.id:064x}", envelope=b"e")
        return time.monotonic()

    # Alone: written at once, not after the 30 s linger.
    started = time.monotonic()
    assert store(commands[0]) - started < 10
    # Two endorsements under way: the first store waits for the second, and both go in one batch.
    release = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        second = pool.submit(store, commands[2], hold=release)
        wait_until(lambda: endorsing.value == 1, 10, "one endorsement under way")
        first = pool.submit(store, commands[1])
        wait_until(lambda: writer._queue.qsize() == 0 and endorsing.value == 2, 10, "the first store lingers")
        time.sleep(0.3)
        assert OutboxCommand.objects.get(id=commands[1].id).status == CommandStatus.PENDING
        release.set()
        assert abs(first.result(timeout=30) - second.result(timeout=30)) < 5
    assert statuses(commands) == [CommandStatus.SUBMITTED] * 3


def test_the_submitters_connections_prepare_the_claim_and_the_row_writes(fabric):
    # Django turns prepared statements off on its connections, which also makes psycopg ignore
    # ``execute(..., prepare=True)``: the claim and the batch writes were planned at every execution.
    from django.db import DEFAULT_DB_ALIAS, connection, connections

    from outbox.management.commands.run_submitter import use_connection_pool

    database = connections.settings[DEFAULT_DB_ALIAS]
    saved = dict(database)
    try:
        use_connection_pool(4)
        enqueue_create_user()
        [command] = outbox_claim_commands(worker_id="w1", limit=1)
        outbox_record_committed(command_id=command.id, worker_id="w1", lease_token=command.lease_token,
                                block_number=3, result=None)
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [statement for (statement,) in cursor.fetchall()]
            cursor.execute("SELECT count(*) FROM outbox_outboxcommand WHERE id = %s", [command.id])
        assert any("WITH due AS" in statement for statement in prepared), prepared
        assert any("SET status = 'COMMITTED'" in statement for statement in prepared), prepared
        assert not any("count(*)" in statement for statement in prepared), "only statements that ask are prepared"
    finally:
        connections.close_all()
        connection.close_pool()
        database.clear()
        database.update(saved)


def test_a_dead_writer_fails_its_health_and_its_callers_time_out_instead_of_waiting_for_ever(settings, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setenv(engine.FAULT_ENV, "writer_dies")
    command = enqueue_create_user()
    [claimed] = outbox_claim_commands(worker_id="w1", limit=1)
    writer = DbWriter(name="test-writer", timeout=0.5)
    with pytest.raises(WriteTimeout, match="test-writer is dead"):
        writer(outbox_record_retry, command_id=command.id, worker_id="w1", lease_token=claimed.lease_token,
               error="x", new_transaction=False)
    assert writer.watch.problem() == "test-writer is dead"


def test_a_command_that_finishes_while_its_lease_is_renewed_is_not_reported_lost(fabric, monkeypatch, caplog):
    # Seen in bench/outbox.py: "leases lost on 6 command(s)" warnings for commands that had simply committed
    # between the renewal's snapshot of the in-flight set and its query.
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=2, batch_size=10, lease_seconds=60)
    finishing, running = enqueue_create_user(), enqueue_create_user()
    claimed = {c.id: c for c in outbox_claim_commands(worker_id="w1", limit=2)}
    submitter._in_flight.update(claimed)
    outbox_record_committed(command_id=finishing.id, worker_id="w1", lease_token=claimed[finishing.id].lease_token,
                            block_number=3, result=None)
    OutboxCommand.objects.filter(id=running.id).update(locked_by="w2")  # taken over: really lost
    renew = engine.outbox_renew_leases

    def renew_while_one_finishes(**kwargs):
        held = renew(**kwargs)
        submitter._finished(finishing.id)
        return held

    monkeypatch.setattr(engine, "outbox_renew_leases", renew_while_one_finishes)
    with caplog.at_level("WARNING", logger="outbox.submitter"):
        submitter.renew_leases(force=True)
    assert [r.getMessage() for r in caplog.records if "leases lost" in r.getMessage()] == [
        f"leases lost on 1 command(s): [{running.id}]"]


# --- a VALID commit's record, written after the worker moved on (Submitter.post) -----------------------------
def held_commit_records(monkeypatch, fail: int = 0) -> tuple[threading.Event, list[int]]:
    """The outcome writer's commit records wait for the returned event; the first ``fail`` batches raise."""
    release, failed = threading.Event(), []
    real = engine._MANY[engine.outbox_record_committed]

    def held(writes):
        assert release.wait(30)
        if len(failed) < fail:
            failed.append(len(writes))
            raise DatabaseError("the database is away")
        return real(writes)

    monkeypatch.setitem(engine._MANY, engine.outbox_record_committed, held)
    return release, failed


def on_chain(fabric, user_id: str) -> bool:
    try:
        return balance(fabric, user_id) == 500_000_000
    except EvaluateError:  # USER_NOT_FOUND: not yet
        return False


def successes() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("outbox_commands_processed_total", {"status": "success"}) or 0.0


def test_a_worker_goes_on_to_its_next_command_while_the_commit_of_its_last_one_is_recorded(fabric, monkeypatch):
    release, _ = held_commit_records(monkeypatch)
    before = successes()
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=1, batch_size=10, lease_seconds=60)
    first, second = enqueue_create_user(), enqueue_create_user()  # two users: both due at once
    assert submitter.submit_once()
    # One worker thread: the second command reaches the chain only if the worker did not wait for the first's
    # record.
    wait_until(lambda: on_chain(fabric, second.aggregate_id), 20, "the second user is on the chain")
    assert statuses([first, second]) == [CommandStatus.SUBMITTED] * 2
    assert successes() == before  # counted once recorded, not before
    release.set()
    wait_until(lambda: statuses([first, second]) == [CommandStatus.COMMITTED] * 2, 20, "both are recorded")
    wait_until(lambda: successes() == before + 2, 5, "both successes are counted")
    assert submitter.in_flight == 0


def test_a_commit_whose_record_failed_is_recorded_by_the_next_attempt_with_the_same_transaction(
        fabric, monkeypatch, caplog):
    release, failed = held_commit_records(monkeypatch, fail=1)
    release.set()
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=1, batch_size=10, lease_seconds=2)
    command = enqueue_create_user()
    with caplog.at_level("ERROR", logger="outbox.submitter"):
        assert submitter.submit_once()
        wait_until(lambda: any("recording the commit in block" in r.getMessage() for r in caplog.records), 20,
                   "the failed record is logged")
    assert failed == [1]
    stored = OutboxCommand.objects.get(id=command.id)
    assert (stored.status, stored.attempts) == (CommandStatus.SUBMITTED, 1)
    # The row stays leased until its lease runs out (it is no longer renewed); the next attempt resubmits the
    # stored envelope, and CommitStatus finds the transaction VALID.
    run_until_committed(submitter, [command])
    row = OutboxCommand.objects.get(id=command.id)
    assert (row.attempts, row.tx_id) == (2, stored.tx_id)
    assert balance(fabric, command.aggregate_id) == 500_000_000  # created once


def test_a_shutdown_waits_for_the_commit_records_still_queued(fabric, monkeypatch):
    release, _ = held_commit_records(monkeypatch)
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=2, batch_size=10, lease_seconds=60)
    commands = [enqueue_create_user(), enqueue_create_user()]
    assert submitter.submit_once()
    wait_until(lambda: submitter.in_flight == 0, 20, "both commands are committed on the chain")
    threading.Timer(0.5, release.set).start()
    assert submitter.drain(grace_seconds=20) == 0
    assert statuses(commands) == [CommandStatus.COMMITTED] * 2  # recorded before the process goes
