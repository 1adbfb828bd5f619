"""Outbox end to end vs a bare fabric_client loop, side by side in one run against one devnet.

    DEBUG=true .venv/bin/python bench/outbox.py

Both sides run the same CreateUser calls for fresh users with the same number of transactions in flight:
the bare loop with ``IN_FLIGHT`` threads, the outbox with 2 ``run_submitter`` processes of ``IN_FLIGHT / 2``.
They alternate, ``ROUNDS`` rounds of ``COMMANDS`` each, and each figure is the median of its rounds (one pair
of phases on this shared machine gave ratios 30 % apart from run to run).
The outbox side is timed from the commit of the enqueuing transaction to the last command's commit; its
latencies (enqueue to commit) are given in devnet block intervals.

CPU per committed command, the figure that travels to a machine with a heavier peer: the submitter processes
plus every PostgreSQL process (backends, WAL writer, checkpointer: the database runs in a private cluster
started for the benchmark, ``bench/support/pg.py``, so exited backends count too), beside the bare loop's
client CPU per transaction (this process, signing and gRPC), same run. Target: at most 1.5 times. The
benchmark's own connection (the enqueuing transaction, the polling) is not counted: in production the enqueue
is the API request's. Devnet's CPU is printed apart (the peer, during the outbox phases).

The bare loop is what the SDKs' ``submit`` does per transaction: endorse, submit, and a signed CommitStatus call
that waits for the commit. The submitters learn the commit statuses of new transactions from one filtered-block
stream per process instead (``OUTBOX_COMMITS_FROM_BLOCKS``, outbox/commit_watch.py); run with
``OUTBOX_COMMITS_FROM_BLOCKS=false`` for the outbox with CommitStatus per transaction, like for like.
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

COMMANDS = int(os.environ.get("BENCH_OUTBOX_COMMANDS", "400"))  # per round and side
ROUNDS = int(os.environ.get("BENCH_OUTBOX_ROUNDS", "5"))
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
    bare_seconds: list[float] = []
    bare_cpu: list[float] = []
    outbox_seconds: list[float] = []
    submitter_cpu: list[float] = []
    devnet_cpu: list[float] = []
    database_cpu: list[float] = []
    xacts: list[int] = []
    latencies: list[float] = []
    claim_to_stored: list[float] = []
    stored_to_commit: list[float] = []
    try:
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
                       env=env, check=True, cwd=ROOT)
        import django

        django.setup()
        from django.db import transaction

        from outbox.models import CommandStatus, OutboxCommand
        from outbox.services import outbox_enqueue

        gateway = connect(devnet.endpoint, X509Identity.from_pem_file(env["FABRIC_MSP_ID"], env["FABRIC_CERT_PATH"]),
                          EcdsaSigner.from_pem_file(env["FABRIC_KEY_PATH"]))
        contract = gateway.network(env["FABRIC_CHANNEL"]).contract(env["FABRIC_CHAINCODE"])
        submit_many(contract, [("IdentityContract:CreateUser", user_args(n, "aa")) for n in range(40)],
                    in_flight=IN_FLIGHT)  # warm-up
        for _ in range(2):
            submitters.append(subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "run_submitter", "--metrics-port", "-1"],
                env=env, cwd=ROOT))
        enqueue(outbox_enqueue, transaction, "cc", 40)  # warm-up: connections, the first claims
        committed = 40
        wait_committed(OutboxCommand, CommandStatus, committed, submitters)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            own_backend = cursor.fetchone()[0]
        for round_ in range(ROUNDS):
            # -- the bare loop --------------------------------------------------------------------------
            started, client_cpu = time.perf_counter(), time.process_time()
            statuses = submit_many(contract, [("IdentityContract:CreateUser", user_args(n, f"b{round_}"))
                                              for n in range(COMMANDS)], in_flight=IN_FLIGHT)
            bare_seconds.append(time.perf_counter() - started)
            bare_cpu.append(time.process_time() - client_cpu)
            assert all(s.successful for s in statuses), "bare loop: a transaction did not commit VALID"

            # -- the outbox, end to end -----------------------------------------------------------------
            cpu_before = [cpu_seconds(p.pid) for p in submitters] + [cpu_seconds(devnet.process.pid)]
            pg_before = pg.cpu_seconds() - cpu_seconds(own_backend)
            xacts_before = database_transactions(connection)
            enqueue(outbox_enqueue, transaction, f"d{round_}", COMMANDS)
            enqueued_at = time.time()
            committed += COMMANDS
            statements = wait_committed(OutboxCommand, CommandStatus, committed, submitters)
            cpu = [cpu_seconds(p.pid) - before for p, before in zip([*submitters, devnet.process], cpu_before,
                                                                     strict=True)]
            pg_cpu = pg.cpu_seconds() - cpu_seconds(own_backend) - pg_before
            time.sleep(1.2)  # backends publish their statistics at most once a second
            # Minus the benchmark's own: two statistics reads before, the enqueuing transaction, each poll's
            # statements (autocommit), this read's flush.
            xacts.append(database_transactions(connection) - xacts_before - 2 - 1 - statements - 1)
            rows = list(OutboxCommand.objects.filter(payload__user_id__startswith=f"d{round_}")
                        .values_list("created_at", "last_attempt_at", "submitted_at", "committed_at"))
            outbox_seconds.append(max(committed_at for *_, committed_at in rows).timestamp() - enqueued_at)
            latencies.extend((committed_at - created).total_seconds() for created, *_, committed_at in rows)
            claim_to_stored.extend((b - a).total_seconds() for _, a, b, _ in rows)
            stored_to_commit.extend((c - b).total_seconds() for _, _, b, c in rows)
            submitter_cpu.append(cpu[0] + cpu[1])
            devnet_cpu.append(cpu[2])
            database_cpu.append(pg_cpu)

        # A trickle (one command per 100 ms, each in its own transaction): latency without a queue.
        for n in range(TRICKLE):
            args = user_args(n, "ee")
            with transaction.atomic():
                outbox_enqueue(command_type="CREATE_USER", aggregate_id=args[0], payload=dict(zip(
                    ("user_id", "biometric_hash", "nationality", "age"), args, strict=True)))
            time.sleep(0.1)
        wait_committed(OutboxCommand, CommandStatus, committed + TRICKLE, submitters)
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

    median = statistics.median
    block = BLOCK_MS / 1000
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    ratio = median(b / o for b, o in zip(bare_seconds, outbox_seconds, strict=True))
    cpu_ratios = [(s + d) / b for s, d, b in zip(submitter_cpu, database_cpu, bare_cpu, strict=True)]
    cpu_ratio = median(cpu_ratios)
    per_command = 1000 / COMMANDS  # seconds per round -> ms per command
    print(f"rounds = {ROUNDS} x {COMMANDS} commands per side (figures: medians of the rounds)")
    print(f"bare fabric_client loop ({IN_FLIGHT} in flight) = {COMMANDS / median(bare_seconds):.1f} commands/s")
    print(f"outbox end to end (2 submitters x {IN_FLIGHT // 2} in flight) = {COMMANDS / median(outbox_seconds):.1f} "
          "commands/s")
    print(f"outbox vs bare loop ratio = {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"enqueue to commit median ({COMMANDS} enqueued at once) = {median(latencies) / block:.1f} "
          "block intervals")
    print(f"enqueue to commit p99 ({COMMANDS} enqueued at once) = {p99 / block:.1f} block intervals")
    trickle_p99 = trickle[min(len(trickle) - 1, int(len(trickle) * 0.99))]
    print(f"enqueue to commit median (one every 100 ms) = {median(trickle) / block:.1f} block intervals")
    print(f"enqueue to commit p99 (one every 100 ms) = {trickle_p99 / block:.1f} block intervals")
    print(f"block interval = {BLOCK_MS} ms")
    devnet_ms = median(devnet_cpu) * per_command
    print(f"devnet cpu per command (the peer, during the outbox phases) = {devnet_ms:.2f} ms")
    from django.conf import settings  # the submitters' settings (the same environment)

    source = "the block stream" if settings.OUTBOX_COMMITS_FROM_BLOCKS else "CommitStatus"
    print(f"outbox commit statuses from = {source} (bare loop: CommitStatus)")
    outbox_ms = median(s + d for s, d in zip(submitter_cpu, database_cpu, strict=True)) * per_command
    print(f"outbox cpu per committed command = {outbox_ms:.2f} ms (submitters {median(submitter_cpu) * per_command:.2f}"
          f" + PostgreSQL {median(database_cpu) * per_command:.2f})")
    print(f"bare loop client cpu per transaction = {median(bare_cpu) * per_command:.2f} ms")
    print(f"database transactions per committed command = {median(xacts) / COMMANDS:.2f}")
    print(f"outbox cpu per command vs bare client ratio, each round = {', '.join(f'{r:.2f}' for r in cpu_ratios)}")
    print(f"outbox cpu per command vs bare client ratio = {cpu_ratio:.2f} (target <= {CPU_TARGET})")
    print(f"median claim to envelope stored = {median(claim_to_stored) * 1000:.0f} ms")
    print(f"median envelope stored to commit recorded = {median(stored_to_commit) * 1000:.0f} ms")
    return 0 if ratio >= TARGET_RATIO and cpu_ratio <= CPU_TARGET else 1


def enqueue(outbox_enqueue, transaction, run: str, count: int) -> None:
    """``count`` CreateUser commands for the users of ``run``, in one transaction (as one burst)."""
    with transaction.atomic():
        for n in range(count):
            args = user_args(n, run)
            outbox_enqueue(command_type="CREATE_USER", aggregate_id=args[0], payload=dict(zip(
                ("user_id", "biometric_hash", "nationality", "age"), args, strict=True)))


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
