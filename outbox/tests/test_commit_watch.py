"""Commit statuses from the submitter's filtered-block stream (outbox.commit_watch), on committed PostgreSQL
rows and an in-process devnet: no CommitStatus call while the stream answers, CommitStatus whenever it cannot,
and the same rows either way."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from fabric_client import BlockEventsError, FilteredBlock
from fabric_client.transaction import Commit
from outbox import submitter as engine
from outbox.models import CommandStatus, OutboxCommand
from outbox.submitter import Submitter
from outbox.tests.conftest import enqueue_create_user, wait_until
from outbox.tests.test_submitter_engine import on_chain, run_until_committed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_outbox")]


def answered(source: str) -> float:
    return REGISTRY.get_sample_value("outbox_commit_status_total", {"source": source}) or 0.0


def stream_up() -> float | None:
    return REGISTRY.get_sample_value("outbox_block_stream_up")


@pytest.fixture
def commit_status_calls(monkeypatch) -> list[str]:
    """The tx ids of every CommitStatus call this process makes."""
    calls: list[str] = []
    real = Commit.status

    def counted(self, **kwargs):
        calls.append(self.transaction_id)
        return real(self, **kwargs)

    monkeypatch.setattr(Commit, "status", counted)
    return calls


@pytest.fixture
def streaming(fabric):
    """A Submitter with the block stream, live; its stream is stopped afterwards."""
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=4, batch_size=10, lease_seconds=60,
                          block_stream=True)
    wait_until(lambda: submitter.commits.live, 10, "the block stream is live")
    yield submitter
    submitter.commits.stop()


def assert_committed_as_the_chain_says(fabric, commands) -> None:
    for command in commands:
        row = OutboxCommand.objects.get(id=command.id)
        status = fabric.network.commit_status(row.tx_id, timeout=5)
        assert (row.status, row.block_number, status.code_name) == (
            CommandStatus.COMMITTED, status.block_number, "VALID")
        assert on_chain(fabric, command.aggregate_id)


def test_while_the_stream_is_live_commands_commit_without_one_commit_status_call(
    fabric, streaming, commit_status_calls
) -> None:
    before = answered("blocks"), answered("query")
    commands = [enqueue_create_user() for _ in range(6)]
    run_until_committed(streaming, commands)
    assert commit_status_calls == []
    assert (answered("blocks") - before[0], answered("query") - before[1]) == (6, 0)
    assert stream_up() == 1.0
    assert streaming.health() == (True, "7 submitter threads ok")
    assert_committed_as_the_chain_says(fabric, commands)


def test_a_stream_that_breaks_while_a_command_waits_hands_it_to_commit_status_and_comes_back(
    fabric, streaming, commit_status_calls, monkeypatch, settings
) -> None:
    settings.FABRIC_COMMIT_STATUS_TIMEOUT = 60.0  # the break answers the waiting command at once, not by then
    submitted, go_on = threading.Event(), threading.Event()

    def held_after_submit(point: str) -> None:
        if point == "after_submit":
            submitted.set()
            assert go_on.wait(30)

    monkeypatch.setattr(engine, "crash_point", held_after_submit)
    command = enqueue_create_user()
    assert streaming.submit_once()
    assert submitted.wait(10)
    streaming.commits._stream.close()  # the stream ends under the waiting command
    wait_until(lambda: not streaming.commits.live, 5, "the watcher notices")
    go_on.set()
    run_until_committed(streaming, [command], timeout=20)
    row = OutboxCommand.objects.get(id=command.id)
    assert commit_status_calls == [row.tx_id]

    wait_until(lambda: streaming.commits.live, 10, "the stream is back")
    assert stream_up() == 1.0
    later = enqueue_create_user()
    run_until_committed(streaming, [later])
    assert commit_status_calls == [row.tx_id]  # answered by the stream again
    assert_committed_as_the_chain_says(fabric, [command, later])


def test_a_stream_that_stays_silent_past_the_commit_status_timeout_is_overruled_by_commit_status(
    fabric, settings, commit_status_calls, monkeypatch
) -> None:
    settings.FABRIC_COMMIT_STATUS_TIMEOUT = 1.0
    silence = threading.Event()

    class Silent:  # the newest block, then nothing: a stalled connection that never says so
        def __iter__(self):
            yield FilteredBlock(0, ())
            silence.wait(60)

        def close(self) -> None:
            silence.set()

    monkeypatch.setattr(fabric.network, "filtered_blocks", lambda **kwargs: Silent())
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=2, batch_size=10, lease_seconds=60,
                          block_stream=True)
    try:
        wait_until(lambda: submitter.commits.live, 10, "the block stream is live")
        command = enqueue_create_user()
        run_until_committed(submitter, [command])
    finally:
        submitter.commits.stop()
    assert commit_status_calls == [OutboxCommand.objects.get(id=command.id).tx_id]
    assert_committed_as_the_chain_says(fabric, [command])


def test_a_peer_that_refuses_the_stream_leaves_every_status_to_commit_status_and_the_process_healthy(
    fabric, commit_status_calls, monkeypatch, caplog
) -> None:
    def forbidden(**kwargs):
        raise BlockEventsError("the peer ended the block stream with status FORBIDDEN", deliver_status="FORBIDDEN")

    monkeypatch.setattr(fabric.network, "filtered_blocks", forbidden)
    submitter = Submitter(fabric, worker_id="w1", max_in_flight=2, batch_size=10, lease_seconds=60,
                          block_stream=True)
    try:
        commands = [enqueue_create_user(), enqueue_create_user()]
        with caplog.at_level("WARNING", logger="outbox.submitter"):
            run_until_committed(submitter, commands)
        assert submitter.health() == (True, "5 submitter threads ok")
    finally:
        submitter.commits.stop()
    assert sorted(commit_status_calls) == sorted(OutboxCommand.objects.get(id=c.id).tx_id for c in commands)
    assert stream_up() == 0.0
    assert any("block stream: the peer ended the block stream with status FORBIDDEN; commit statuses are asked "
               "one by one" in r.getMessage() for r in caplog.records)
    assert_committed_as_the_chain_says(fabric, commands)
