"""Outbox end to end vs a bare fabric_client loop, side by side in one run against one devnet.

    DEBUG=true .venv/bin/python bench/outbox.py

Both sides run the same CreateUser calls for fresh users with the same number of transactions in flight:
the bare loop with ``IN_FLIGHT`` threads, the outbox with 2 ``run_submitter`` processes of ``IN_FLIGHT / 2``.
The outbox side is timed from the commit of the enqueuing transaction to the last command's commit; its
latencies (enqueue to commit) are given in devnet block intervals.

CPU per committed command, the figure that travels to a machine with a heavier peer: the submitter processes
plus every PostgreSQL process (backends, WAL writer, checkpointer: the database runs in a private cluster
started for the benchmark, ``bench/support/pg.py``, so exited backends count too), beside the bare loop's
client CPU per transaction (this process, signing and gRPC), same run. Target: at most 1.5 times. The
benchmark's own connection (the enqueuing transaction, the polling) is not counted: in production the enqueue
is the API request's. Devnet's CPU is printed apart (the peer, the same work for both sides).
Prints ``name = value unit`` lines and ``name ratio = x (target >= t)``; exits 1 when a target is missed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support.cpu import cpu_seconds  # noqa: E402
from bench.support.pg import private_postgres  # noqa: E402

COMMANDS = int(os.environ.get("BENCH_OUTBOX_COMMANDS", "400"))
IN_FLIGHT = int(os.environ.get("BENCH_OUTBOX_IN_FLIGHT", "32"))
BLOCK_MS = int(os.environ.get("BENCH_OUTBOX_BLOCK_MS", "250"))  # devnet default; the observed peer BatchTimeout
TARGET_RATIO = 0.8
CPU_TARGET = 1.5
TRICKLE = 50


def user_args(n: int, run: str) -> list[str]:
    return [f"{run}{n:024x}", f"{int(run, 16) * 10**7 + n:064x}", "NG", "30"]


def main() -> int:
    with private_postgres() as pg:
        return run(pg)


def run(pg) -> int:
    from fabric_client import X509Identity, connect
    from fabric_client.devnet.load import submit_many
    from fabric_client.devnet.process import DevnetProcess
    from fabric_client.signing import EcdsaSigner

    subprocess.run([sys.executable, "-c", "import psycopg, sys; psycopg.connect(sys.argv[1], autocommit=True)"
                    ".execute('CREATE DATABASE bench_outbox')", pg.url], check=True)
    url = pg.database_url("bench_outbox")
    tmp = tempfile.TemporaryDirectory(prefix="bench-outbox-")
    devnet = DevnetProcess(Path(tmp.name) / "devnet", block_timeout_ms=BLOCK_MS, block_size=50).start()
    env = {**os.environ, **devnet.env, "DATABASE_URL": url, "DEBUG": "true", "LOG_LEVEL": "WARNING",
           "OUTBOX_MAX_IN_FLIGHT": str(IN_FLIGHT // 2), "OUTBOX_BATCH_SIZE": str(IN_FLIGHT // 2),
           "PYTHONUNBUFFERED": "1",
           # Development credentials (plaintext to devnet), production behaviour: no debug cursor per query.
           "DJANGO_SETTINGS_MODULE": "bench.support.production_settings"}
    env.pop("FABRIC_TLS_CA_PATH", None)
    os.environ.update(env)
    submitters: list[subprocess.Popen] = []
    try:
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
                       env=env, check=True, cwd=ROOT)
        import django

        django.setup()
        from django.db import transaction

        from outbox.models import CommandStatus, OutboxCommand
        from outbox.services import outbox_enqueue

        # -- the bare loop ------------------------------------------------------------------------------
        gateway = connect(devnet.endpoint, X509Identity.from_pem_file(env["FABRIC_MSP_ID"], env["FABRIC_CERT_PATH"]),
                          EcdsaSigner.from_pem_file(env["FABRIC_KEY_PATH"]))
        contract = gateway.network(env["FABRIC_CHANNEL"]).contract(env["FABRIC_CHAINCODE"])
        submit_many(contract, [("IdentityContract:CreateUser", user_args(n, "aa")) for n in range(40)],
                    in_flight=IN_FLIGHT)  # warm-up
        started, client_cpu = time.perf_counter(), time.process_time()
        statuses = submit_many(contract, [("IdentityContract:CreateUser", user_args(n, "bb"))
                                          for n in range(COMMANDS)], in_flight=IN_FLIGHT)
        bare_seconds = time.perf_counter() - started
        bare_cpu = time.process_time() - client_cpu
        assert all(s.successful for s in statuses), "bare loop: a transaction did not commit VALID"
        gateway.close()

        # -- the outbox, end to end ---------------------------------------------------------------------
        for _ in range(2):
            submitters.append(subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "run_submitter", "--metrics-port", "-1"],
                env=env, cwd=ROOT))
        with transaction.atomic():  # warm-up: connections, the first claims
            for n in range(40):
                args = user_args(n, "cc")
                outbox_enqueue(command_type="CREATE_USER", aggregate_id=args[0], payload=dict(zip(
                    ("user_id", "biometric_hash", "nationality", "age"), args, strict=True)))
        wait_committed(OutboxCommand, CommandStatus, 40, submitters)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            own_backend = cursor.fetchone()[0]
        cpu_before = [cpu_seconds(p.pid) for p in submitters] + [cpu_seconds(devnet.process.pid)]
        pg_before = pg.cpu_seconds() - cpu_seconds(own_backend)
        xacts_before = database_transactions(connection)
        with transaction.atomic():
            for n in range(COMMANDS):
                args = user_args(n, "dd")
                outbox_enqueue(command_type="CREATE_USER", aggregate_id=args[0], payload=dict(zip(
                    ("user_id", "biometric_hash", "nationality", "age"), args, strict=True)))
        enqueued_at = time.time()
        statements = wait_committed(OutboxCommand, CommandStatus, 40 + COMMANDS, submitters)
        time.sleep(1.2)  # backends publish their statistics at most once a second
        # Minus the benchmark's own: two statistics reads before, the enqueuing transaction, each poll's
        # statements (autocommit), this read's flush.
        xacts = database_transactions(connection) - xacts_before - 2 - 1 - statements - 1
        rows = list(OutboxCommand.objects.filter(payload__user_id__startswith="dd")
                    .values_list("created_at", "committed_at"))
        phases = list(OutboxCommand.objects.filter(payload__user_id__startswith="dd")
                      .values_list("last_attempt_at", "submitted_at", "committed_at"))
        claim_to_stored = statistics.median((b - a).total_seconds() for a, b, _ in phases)
        stored_to_commit = statistics.median((c - b).total_seconds() for _, b, c in phases)
        last_commit = max(committed for _, committed in rows).timestamp()
        outbox_seconds = last_commit - enqueued_at
        latencies = sorted((committed - created).total_seconds() for created, committed in rows)
        cpu = [cpu_seconds(p.pid) - before for p, before in zip([*submitters, devnet.process], cpu_before,
                                                                 strict=True)]
        pg_cpu = pg.cpu_seconds() - cpu_seconds(own_backend) - pg_before
        cpu_per_command_ms = [round(c / COMMANDS * 1000, 1) for c in cpu]

        # A trickle (one command per 100 ms, each in its own transaction): latency without a queue.
        for n in range(TRICKLE):
            args = user_args(n, "ee")
            with transaction.atomic():
                outbox_enqueue(command_type="CREATE_USER", aggregate_id=args[0], payload=dict(zip(
                    ("user_id", "biometric_hash", "nationality", "age"), args, strict=True)))
            time.sleep(0.1)
        wait_committed(OutboxCommand, CommandStatus, 40 + COMMANDS + TRICKLE, submitters)
        trickle = sorted((committed - created).total_seconds() for created, committed in OutboxCommand.objects
                         .filter(payload__user_id__startswith="ee").values_list("created_at", "committed_at"))
    finally:
        for process in submitters:
            process.terminate()
        for process in submitters:
            process.wait(30)
        devnet.kill()
        tmp.cleanup()
        from django.db import connections

        connections.close_all()

    bare_rate = COMMANDS / bare_seconds
    outbox_rate = COMMANDS / outbox_seconds
    block = BLOCK_MS / 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    ratio = outbox_rate / bare_rate
    print(f"bare fabric_client loop ({IN_FLIGHT} in flight) = {bare_rate:.1f} commands/s")
    print(f"outbox end to end (2 submitters x {IN_FLIGHT // 2} in flight) = {outbox_rate:.1f} commands/s")
    print(f"outbox vs bare loop ratio = {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"enqueue to commit median ({COMMANDS} enqueued at once) = {statistics.median(latencies) / block:.1f} "
          "block intervals")
    print(f"enqueue to commit p99 ({COMMANDS} enqueued at once) = {p99 / block:.1f} block intervals")
    trickle_p99 = trickle[min(len(trickle) - 1, int(len(trickle) * 0.99))]
    print(f"enqueue to commit median (one every 100 ms) = {statistics.median(trickle) / block:.1f} block intervals")
    print(f"enqueue to commit p99 (one every 100 ms) = {trickle_p99 / block:.1f} block intervals")
    print(f"block interval = {BLOCK_MS} ms")
    print(f"cpu per command (submitter 1, submitter 2, devnet) = {cpu_per_command_ms} ms")
    outbox_cpu_ms = (cpu[0] + cpu[1] + pg_cpu) / COMMANDS * 1000
    bare_cpu_ms = bare_cpu / COMMANDS * 1000
    print(f"outbox cpu per committed command = {outbox_cpu_ms:.2f} ms (submitters "
          f"{(cpu[0] + cpu[1]) / COMMANDS * 1000:.2f} + PostgreSQL {pg_cpu / COMMANDS * 1000:.2f})")
    print(f"bare loop client cpu per transaction = {bare_cpu_ms:.2f} ms")
    print(f"database transactions per committed command = {xacts / COMMANDS:.2f}")
    cpu_ratio = outbox_cpu_ms / bare_cpu_ms
    print(f"outbox cpu per command vs bare client ratio = {cpu_ratio:.2f} (target <= {CPU_TARGET})")
    print(f"median claim to envelope stored = {claim_to_stored * 1000:.0f} ms")
    print(f"median envelope stored to commit recorded = {stored_to_commit * 1000:.0f} ms")
    return 0 if ratio >= TARGET_RATIO and cpu_ratio <= CPU_TARGET else 1


def database_transactions(connection) -> int:
    """Transactions committed in the benchmark's database so far (PostgreSQL's statistics)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def wait_committed(model, statuses, count: int, submitters, timeout: float = 300.0) -> int:
    """Polls until ``count`` commands committed; returns how many statements it ran."""
    deadline = time.monotonic() + timeout
    statements = 0
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in submitters):
            sys.exit("a submitter exited during the benchmark")
        statements += 2
        if model.objects.filter(status=statuses.COMMITTED).count() >= count:
            return statements - 1
        if model.objects.filter(status=statuses.FAILED).exists():
            sys.exit(f"commands failed: {list(model.objects.filter(status=statuses.FAILED)[:3])}")
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {count} committed commands")


if __name__ == "__main__":
    sys.exit(main())
