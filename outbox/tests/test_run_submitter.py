"""Real processes on PostgreSQL against a devnet process: replicas, order, crashes, an outage, metrics."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter, defaultdict

import grpc
import psycopg
import pytest

from fabric_client import ChaincodeEventsError, X509Identity, connect
from fabric_client.signing import EcdsaSigner
from outbox.models import CommandStatus, OutboxCommand
from outbox.tests.conftest import GENESIS, enqueue_create_user, enqueue_transfer, new_user_id, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ledger(devnet_process):
    """A client of the devnet process, to read balances and events as the chain holds them."""
    env = devnet_process.env
    gateway = connect(env["FABRIC_PEER_ENDPOINT"],
                      X509Identity.from_pem_file(env["FABRIC_MSP_ID"], env["FABRIC_CERT_PATH"]),
                      EcdsaSigner.from_pem_file(env["FABRIC_KEY_PATH"]))
    yield gateway.network(env["FABRIC_CHANNEL"])
    gateway.close()


def balances(network, user_ids) -> dict[str, int]:
    contract = network.contract("gxcc", "TokenomicsContract")
    return {u: int(contract.evaluate("GetBalance", u).decode()) for u in user_ids}


def chain_events(network) -> list:
    """Every chaincode event on the chain (the stream is read until it stays quiet)."""
    found = []
    stream = network.chaincode_events("gxcc", start_block=0, timeout=2.0)
    try:
        found.extend(stream)
    except ChaincodeEventsError as exc:
        assert exc.code == grpc.StatusCode.DEADLINE_EXCEEDED, exc
    return found


def assert_each_effect_once(network, commands: list[OutboxCommand]) -> None:
    """Every committed command left exactly one effect: one event, none replayed (a second submission of a
    transfer would show up as a replay), and the ledger's balances are what the commands add up to."""
    events = chain_events(network)
    payloads = [json.loads(e.payload) for e in events]
    assert not [p for p in payloads if p.get("replayed")], "a transfer reached the chain twice"
    transfer_keys = Counter(p["idempotencyKey"] for p in payloads if "idempotencyKey" in p)
    created = Counter(p["userId"] for e, p in zip(events, payloads, strict=True) if e.event_name == "UserCreated")
    for command in commands:
        if command.command_type == "TRANSFER":
            assert transfer_keys[command.idempotency_key] == 1, f"transfer {command.id} took effect ≠ once"
        elif command.command_type == "CREATE_USER":
            assert created[command.aggregate_id] == 1
    expected: dict[str, int] = defaultdict(int)
    for command in commands:
        if command.command_type == "CREATE_USER":
            expected[command.aggregate_id] += GENESIS
    for command in commands:
        if command.command_type == "TRANSFER":  # amounts below 3 GX between NG users: no fee
            expected[command.payload["from_user_id"]] -= int(command.payload["amount_qirat"])
            expected[command.payload["to_user_id"]] += int(command.payload["amount_qirat"])
    assert balances(network, expected) == dict(expected)


def wait_all_committed(timeout: float, processes=()) -> list[OutboxCommand]:
    def done() -> bool:
        for process in processes:
            if process.process.poll() not in (None, 137, -9):
                pytest.fail(f"submitter exited {process.process.returncode}: {process.output()[-2000:]}")
        if OutboxCommand.objects.filter(status=CommandStatus.FAILED).exists():
            pytest.fail(f"a command FAILED: {status()}")
        return not OutboxCommand.objects.exclude(status=CommandStatus.COMMITTED).exists()

    def status() -> str:
        counts = Counter(OutboxCommand.objects.values_list("status", flat=True))
        failed = list(OutboxCommand.objects.filter(status=CommandStatus.FAILED)
                      .values_list("id", "error_message")[:3])
        return f"every command is COMMITTED (now {dict(counts)}, failed e.g. {failed})"

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        time.sleep(0.2)
    if not done():
        pytest.fail(f"timed out after {timeout:.0f}s waiting until {status()}")
    return list(OutboxCommand.objects.order_by("id"))


def test_three_submitters_commit_600_commands_over_60_users_once_each_and_in_order_per_user(
    start_submitter, ledger
):
    submitters = [start_submitter() for _ in range(3)]
    users = [new_user_id() for _ in range(60)]
    for user_id in users:
        enqueue_create_user(user_id)
    wait_all_committed(60, submitters)  # a transfer needs its recipient on the chain (another user's order)
    for k in range(1, 10):
        for i, user_id in enumerate(users):
            enqueue_transfer(user_id, users[(i + k) % 60], 1000 + 10 * i + k)

    commands = wait_all_committed(180, submitters)
    assert len(commands) == 600
    by_user: dict[str, list[OutboxCommand]] = defaultdict(list)
    for command in commands:
        by_user[command.aggregate_id].append(command)
    for user_id, own in by_user.items():
        blocks = [c.block_number for c in own]  # in enqueue order
        assert blocks == sorted(blocks) and len(set(blocks)) == len(blocks), f"{user_id} committed out of order"
    assert_each_effect_once(ledger, commands)
    assert {c.locked_by for c in commands} == {""}  # every lease was released
    assert sum(s.terminate() for s in submitters) == 0


@pytest.mark.parametrize("crash_at", ["after_endorse", "after_submit"])
def test_a_submitter_killed_mid_transaction_is_finished_by_the_next_one_with_one_effect(
    start_submitter, ledger, crash_at
):
    first = start_submitter()
    alice, bob = new_user_id(), new_user_id()
    enqueue_create_user(alice)
    enqueue_create_user(bob)
    wait_all_committed(30, [first])
    assert first.terminate() == 0  # SIGTERM: a clean exit

    crashing = start_submitter(crash_at=crash_at)
    transfers = [enqueue_transfer(alice, bob, 5000), enqueue_transfer(alice, bob, 3000)]
    wait_until(lambda: crashing.process.poll() is not None, 30, f"the submitter dies at {crash_at}")
    assert crashing.process.returncode == 137
    stored = OutboxCommand.objects.get(id=transfers[0].id)
    assert stored.status == CommandStatus.SUBMITTED and stored.tx_id and stored.signed_envelope

    start_submitter()  # a restarted replica takes the row over once the dead one's lease expires
    commands = wait_all_committed(60)
    assert next(c for c in commands if c.id == stored.id).tx_id == stored.tx_id
    assert_each_effect_once(ledger, commands)


def test_a_submitter_killed_while_idle_leaves_nothing_behind(start_submitter, ledger):
    doomed, survivor = start_submitter(), start_submitter()
    users = [new_user_id() for _ in range(4)]
    for user_id in users:
        enqueue_create_user(user_id)
    wait_all_committed(30, [doomed, survivor])
    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(10)
    for i, user_id in enumerate(users):
        enqueue_transfer(user_id, users[(i + 1) % 4], 700 + i)
    assert_each_effect_once(ledger, wait_all_committed(30, [survivor]))


def test_commands_retry_through_a_ten_second_devnet_outage_and_finish(
    start_submitter, ledger, devnet_process, settings
):
    from fabric_client.devnet.process import DevnetProcess

    settings.OUTBOX_MAX_ATTEMPTS = 100  # the budget is the row's, set at enqueue: enough for 10 s of backoff
    submitters = [start_submitter(), start_submitter()]
    users = [new_user_id() for _ in range(10)]
    for user_id in users:
        enqueue_create_user(user_id)
    wait_all_committed(30, submitters)
    for k in range(1, 6):
        for i, user_id in enumerate(users):
            enqueue_transfer(user_id, users[(i + k) % 10], 100 * k + i)
    wait_until(lambda: OutboxCommand.objects.filter(status=CommandStatus.COMMITTED).count() > 15, 30,
               "some transfers committed")
    assert devnet_process.terminate() == 0
    time.sleep(10)
    restarted = DevnetProcess(devnet_process.data_dir, port=devnet_process.port, block_timeout_ms=50).start()
    try:
        commands = wait_all_committed(90, submitters)
        assert any(c.attempts > 1 for c in commands), "nothing was retried during the outage"
        assert_each_effect_once(ledger, commands)
    finally:
        restarted.kill()


def test_a_submitter_serves_its_metrics_and_health_on_its_port(start_submitter):
    submitter = start_submitter()
    enqueue_create_user()
    wait_all_committed(30, [submitter])

    def metrics() -> str:
        return submitter.get("/metrics")[1]

    wait_until(lambda: 'outbox_commands_processed_total{status="success"} 1.0' in metrics(), 10,
               "the committed command is counted")
    text = metrics()
    for name in ('outbox_commands_processed_total{status="failed"} 0.0',
                 'outbox_commands_processed_total{status="retried"} 0.0', "outbox_queue_depth",
                 "outbox_processing_duration_seconds_count 1.0", "outbox_oldest_pending_age_seconds",
                 "outbox_dead_letters 0.0"):
        assert name in text
    assert submitter.get("/livez")[0] == 200 and submitter.get("/readyz")[0] == 200
    assert submitter.terminate() == 0


def test_on_sigterm_a_submitter_hands_back_what_it_cannot_finish_and_exits_0(subprocess_env, tmp_path):
    from fabric_client.devnet.process import DevnetProcess
    from outbox.tests.conftest import SubmitterProcess

    # Blocks are cut 4 s after their first transaction: commands sit in flight, waiting for their commit.
    slow = DevnetProcess(tmp_path / "slow-devnet", block_timeout_ms=4000, block_size=1000).start()
    env = {**subprocess_env, **slow.env, "OUTBOX_SHUTDOWN_GRACE_SECONDS": "0", "OUTBOX_LEASE_SECONDS": "60",
           "FABRIC_COMMIT_STATUS_TIMEOUT": "30", "LOG_LEVEL": "WARNING"}
    env.pop("FABRIC_TLS_CA_PATH", None)
    first = SubmitterProcess(env, tmp_path / "first.log")
    second = None
    try:
        first.wait_ready()
        commands = [enqueue_create_user() for _ in range(3)]
        wait_until(lambda: OutboxCommand.objects.filter(status=CommandStatus.SUBMITTED).count() == 3, 20,
                   "all three are submitted and waiting for their block")
        stored = dict(OutboxCommand.objects.values_list("id", "tx_id"))
        assert first.terminate(timeout=20) == 0
        rows = list(OutboxCommand.objects.filter(id__in=[c.id for c in commands]))
        assert all(r.locked_by == "" and r.locked_until is None and r.status != CommandStatus.COMMITTED
                   for r in rows), "leases were not handed back"

        second = SubmitterProcess(env, tmp_path / "second.log")  # takes over at once: no lease to wait out
        second.wait_ready()
        finished = wait_all_committed(30, [second])
        assert {c.id: c.tx_id for c in finished} == stored  # the handed-back transactions, not new ones
    finally:
        first.stop()
        if second is not None:
            second.stop()
        slow.kill()


@pytest.mark.parametrize(("fault", "problem"), [
    ("writer_dies", "submitter-store-writer is dead"),
    ("writer_hangs", "submitter-store-writer is stuck"),
    ("worker_dies", "submitter-worker-"),
])
def test_livez_fails_when_a_submitter_thread_died_or_hangs_so_that_the_pod_is_restarted(
    start_submitter, fault, problem
):
    submitter = start_submitter(GX_SUBMITTER_FAULT=fault, WORKER_HEARTBEAT_TIMEOUT="2")
    assert submitter.get("/livez")[0] == 200  # no work yet: every thread waits, healthy
    enqueue_create_user()  # the first unit of work meets the fault
    def livez() -> tuple[int, dict]:
        status, body = submitter.get("/livez")
        return status, json.loads(body)

    wait_until(lambda: problem in livez()[1]["detail"], 30, f"/livez names the thread after {fault}")
    status, body = livez()
    assert (status, body["status"]) == (503, "unavailable") and problem in body["detail"]
    if fault.endswith("_dies"):
        assert any(json.loads(line).get("level") == "critical" and "died" in json.loads(line)["message"]
                   for line in submitter.output().splitlines() if line.startswith("{")), "the death is logged"
    assert submitter.process.poll() is None  # the loop itself runs on: the kubelet's restart ends it


def listener_pids() -> list[int]:
    from django.db import connection

    from outbox.listener import APPLICATION_NAME

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                       [APPLICATION_NAME])
        return [pid for (pid,) in cursor.fetchall()]


def test_a_lost_listen_connection_is_re_established_with_backoff_and_notify_wakes_the_submitter_again(
    start_submitter
):
    from django.db import connection

    # It never polls within this test: only a NOTIFY can make it claim a command.
    submitter = start_submitter(OUTBOX_POLL_INTERVAL="3600", LOG_LEVEL="INFO")

    def listening() -> str:
        return next(line for line in submitter.get("/metrics")[1].splitlines() if line.startswith("outbox_listening "))

    wait_until(lambda: listening() == "outbox_listening 1.0", 20, "the submitter listens")  # set up after /readyz
    [first_pid] = listener_pids()
    db = connection.settings_dict
    # The test database refuses new connections for a while (a restart, a failover: our own connections stay)
    # and the listener is cut off. (Only another database can change that setting of this one.)
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"] or None,
                         dbname="postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{db["NAME"]}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(%s)", [first_pid])
            wait_until(lambda: listening() == "outbox_listening 0.0", 20, "the submitter says it polls")
            wait_until(lambda: submitter.output().count("LISTEN outbox_command unavailable") >= 2, 30,
                       "two attempts to listen again were refused")
        finally:
            admin.execute(f'ALTER DATABASE "{db["NAME"]}" ALLOW_CONNECTIONS true')
    wait_until(lambda: listening() == "outbox_listening 1.0", 60, "the submitter listens again")
    assert listener_pids() not in ([], [first_pid])
    assert "re-established after" in submitter.output()

    command = enqueue_create_user()  # its NOTIFY is the only wake-up the submitter gets
    wait_until(lambda: OutboxCommand.objects.get(id=command.id).status == CommandStatus.COMMITTED, 30,
               "the command enqueued after the reconnection is committed")
    assert submitter.terminate() == 0
