"""Request → visible: how long one ``POST /api/v1/transfers`` with ``Prefer: wait=10`` takes to answer 201 with
the new balance, in block intervals, beside a client that polls instead (the flow before ``Prefer: wait``).

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/gxbackend .venv/bin/python bench/visibility.py

The whole stack runs as in production, on one machine: gunicorn (one worker, 4 threads), ``run_submitter``,
``run_projector`` and devnet (``BENCH_VISIBILITY_BLOCK_MS`` blocks, 250 ms: the observed peer BatchTimeout) on a
scratch database ``<DATABASE_URL name>_bench_visibility`` (created, migrated, dropped). Single transfers, one at
a time, each from a sender with nothing else in flight:

- *Prefer: wait*: the time from sending the request to the 201 whose wallet shows the transfer;
- *polling*: POST (202), then ``GET status_url`` every ``POLL_MS`` until COMMITTED, then ``GET wallet`` every
  ``POLL_MS`` until the balance shows it (what a wallet app did before): its latency and requests per transfer.

Prints ``name = value unit`` lines; exits 1 when the median request → visible latency with ``Prefer: wait``
exceeds 1.5 block intervals.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gxbackend.testing import (  # noqa: E402
    create_scratch_database,
    drop_scratch_database,
    free_port,
    running_gunicorn,
    stop_process,
    wait_for_http,
)

TRANSFERS = int(os.environ.get("BENCH_VISIBILITY_TRANSFERS", "60"))
BLOCK_MS = int(os.environ.get("BENCH_VISIBILITY_BLOCK_MS", "250"))
POLL_MS = 100
TARGET_P50_BLOCKS = 1.5
SENDERS = 4  # transfers rotate over them, so each sender's previous transfer is long visible


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def call(method: str, url: str, token: str, body: dict | None = None, headers: dict | None = None,
         ) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={  # noqa: S310 - loopback
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def main() -> int:
    from fabric_client.devnet.process import DevnetProcess

    url = create_scratch_database("bench_visibility")
    tmp = tempfile.TemporaryDirectory(prefix="bench-visibility-")
    devnet = DevnetProcess(Path(tmp.name) / "devnet", block_timeout_ms=BLOCK_MS, block_size=50).start()
    env = {**os.environ, **devnet.env, "DATABASE_URL": url, "DEBUG": "true", "LOG_LEVEL": "WARNING",
           "PYTHONUNBUFFERED": "1", "THROTTLE_TRANSFER": "100000/min", "JWT_ACCESS_TTL_SECONDS": "3600",
           "PROJECTOR_HEIGHT_POLL_SECONDS": "1"}
    env.pop("FABRIC_TLS_CA_PATH", None)
    env.pop("REDIS_URL", None)  # throttles in local memory: nothing left behind in a shared Redis
    os.environ.update(env)
    workers: list[subprocess.Popen] = []
    try:
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
                       env=env, check=True, cwd=ROOT)
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gxbackend.settings")
        django.setup()
        for command in ("run_submitter", "run_projector"):
            port = free_port()
            workers.append(subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), command, "--metrics-port", str(port)], env=env, cwd=ROOT))
            wait_for_http(f"http://127.0.0.1:{port}/livez", process=workers[-1])
        senders, recipient = make_active_users(SENDERS)
        with running_gunicorn(env, workers=1, threads=4) as base:
            prefer = measure(base, senders, recipient, prefer=True)
            phases = breakdown()
            polling = measure(base, senders, recipient, prefer=False)
    finally:
        for process in workers:
            stop_process(process)
        devnet.kill()
        tmp.cleanup()
        drop_scratch_database(url)

    block = BLOCK_MS / 1000
    p50 = statistics.median(prefer["latency"]) / block
    print(f"request to visible p50 (Prefer: wait, single transfers) = {p50:.2f} block intervals "
          f"(target <= {TARGET_P50_BLOCKS})")
    print(f"request to visible p99 (Prefer: wait, single transfers) = "
          f"{percentile(prefer['latency'], 0.99) / block:.2f} block intervals")
    print(f"requests per transfer (Prefer: wait) = {statistics.mean(prefer['requests']):.1f} requests")
    print(f"request to visible p50 (polling every {POLL_MS} ms) = "
          f"{statistics.median(polling['latency']) / block:.2f} block intervals")
    print(f"request to visible p99 (polling every {POLL_MS} ms) = "
          f"{percentile(polling['latency'], 0.99) / block:.2f} block intervals")
    print(f"requests per transfer (polling every {POLL_MS} ms) = {statistics.mean(polling['requests']):.1f} requests")
    print(f"median enqueue to commit recorded (Prefer: wait) = {phases['committed'] * 1000:.0f} ms")
    print(f"median enqueue to block applied by the projector (Prefer: wait) = {phases['applied'] * 1000:.0f} ms")
    print(f"block interval = {BLOCK_MS} ms")
    print(f"transfers measured = {TRANSFERS} each way")
    return 0 if p50 <= TARGET_P50_BLOCKS else 1


def make_active_users(count: int) -> tuple[list[tuple[str, str]], str]:
    """``count`` senders and one recipient, created on chain through the outbox and projected (ACTIVE, 500 GX);
    returns [(user id, access token)] and the recipient's id."""
    import datetime

    from django.db import transaction

    from identity.models import ProfileStatus, User, UserProfile
    from identity.services import create_user_payload
    from identity.tokens import tokens_for
    from outbox.models import CommandType
    from outbox.services import outbox_enqueue

    users = []
    with transaction.atomic():
        for n in range(count + 1):
            user = User.objects.create_user(f"bench{n}@example.com", None)
            profile = UserProfile.objects.create(user=user, first_name="Bench", last_name=str(n),
                                                 date_of_birth=datetime.date(1990, 1, 1), nationality="NG",
                                                 status=ProfileStatus.APPROVED_PENDING_ONCHAIN)
            outbox_enqueue(command_type=CommandType.CREATE_USER, aggregate_id=profile.onchain_user_id,
                           payload=create_user_payload(profile=profile, biometric_hash=f"{n + 1:064x}",
                                                       today=datetime.date.today()))
            users.append(user)
    deadline = time.monotonic() + 120
    while UserProfile.objects.filter(status=ProfileStatus.ACTIVE).count() < count + 1:
        if time.monotonic() > deadline:
            sys.exit("the users did not become ACTIVE (submitter or projector down?)")
        time.sleep(0.1)
    return [(str(u.pk), tokens_for(u)["access"]) for u in users[:count]], str(users[-1].pk)


def breakdown() -> dict[str, float]:
    """Medians over the transfers so far: enqueue → commit recorded (submitter), enqueue → block applied."""
    from outbox.models import CommandType, OutboxCommand
    from projector.models import ProjectedBlock

    applied = dict(ProjectedBlock.objects.values_list("block_number", "applied_at"))
    rows = OutboxCommand.objects.filter(command_type=CommandType.TRANSFER).values_list(
        "created_at", "committed_at", "block_number")
    return {"committed": statistics.median((c - a).total_seconds() for a, c, _ in rows),
            "applied": statistics.median((applied[b] - a).total_seconds() for a, _, b in rows)}


def measure(base: str, senders: list[tuple[str, str]], recipient: str, *, prefer: bool) -> dict[str, list[float]]:
    latencies: list[float] = []
    requests: list[float] = []
    for n in range(TRANSFERS + 3):  # the first 3 warm up connections and code paths
        sender, token = senders[n % len(senders)]
        status, wallet, _ = call("GET", f"{base}/api/v1/users/{sender}/wallet", token)
        before = int(wallet["balance_qirat"])
        body = {"to_user_id": recipient, "amount_qirat": "1000"}  # < 3 GX, same nationality: no fee
        started = time.perf_counter()
        if prefer:
            status, done, headers = call("POST", f"{base}/api/v1/transfers", token, body, {"Prefer": "wait=10"})
            if status != 201 or int(done["wallet"]["balance_qirat"]) != before - 1000:
                sys.exit(f"Prefer: wait answered {status} {done} {headers}")
            count = 1
        else:
            status, accepted, _ = call("POST", f"{base}/api/v1/transfers", token, body)
            if status != 202:
                sys.exit(f"transfer answered {status} {accepted}")
            count = 1
            while True:
                count += 1
                state = call("GET", f"{base}{accepted['status_url']}", token)[1]
                if state["status"] == "COMMITTED":
                    break
                time.sleep(POLL_MS / 1000)
            while True:
                count += 1
                if int(call("GET", f"{base}/api/v1/users/{sender}/wallet", token)[1]["balance_qirat"]) < before:
                    break
                time.sleep(POLL_MS / 1000)
        elapsed = time.perf_counter() - started
        if n >= 3:
            latencies.append(elapsed)
            requests.append(count)
    return {"latency": latencies, "requests": requests}


if __name__ == "__main__":
    sys.exit(main())
