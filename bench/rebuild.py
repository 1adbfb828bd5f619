"""``manage.py rebuild_projections`` from devnet, timed: the compass goal is 1,000,000 events in <= 60 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gxbackend .venv/bin/python bench/rebuild.py

Builds a devnet chain with ``python -m fabric_client.devnet.seed`` (``BENCH_REBUILD_USERS``, 10,000 users, then
transfers: one event per transaction; ``BENCH_REBUILD_EVENTS``, default 100,000), or uses a chain seeded before
(``BENCH_REBUILD_DEVNET_DIR``, seeded with ``--prefix a0``: its user ids are UUIDs in hex, as the backend's
are), starts devnet on it, registers the chain's users locally (a rebuild leaves out users this backend does
not know) and runs the real command in a subprocess against a scratch database
``<DATABASE_URL name>_bench_rebuild``, printing its progress lines. The 1,000,000-event run::

    python -m fabric_client.devnet.seed --data-dir var/rebuild --prefix a0 --users 10000 --transfers 990000
    BENCH_REBUILD_DEVNET_DIR=var/rebuild .venv/bin/python bench/rebuild.py

(seeding costs 0.6–0.7 ms of CPU per transaction, a third of it ECDSA: three signatures and a verification;
under ``nice`` on the shared 2-core machine 10^6 took 29 minutes, 400–1,300 transactions/s with the load of the
moment: that is why ``make bench`` runs 10^5). Target: the rate that rebuilds 1,000,000 events in 60 s
(16,667 events/s); the time projected for 1,000,000 events is printed beside the measured one. Exits 1 when the
target is missed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gxbackend.testing import create_scratch_database, drop_scratch_database  # noqa: E402

EVENTS = int(os.environ.get("BENCH_REBUILD_EVENTS", "100000"))
# Enough users that devnet's blocks fill up: the seeder closes a block when a transfer touches a user already
# in it (MVCC), so with 1,000 users blocks held ~20 transfers, far fewer than a loaded peer's.
USERS = int(os.environ.get("BENCH_REBUILD_USERS", "10000"))
DEVNET_DIR = os.environ.get("BENCH_REBUILD_DEVNET_DIR")
PREFIX = "a0"
TARGET_SECONDS_PER_MILLION = 60.0


def chain_user_ids(users: int) -> list[str]:
    """The ids fabric_client.devnet.seed gives its users (``<prefix><number>``, 32 characters)."""
    return [f"{PREFIX}{n:0{32 - len(PREFIX)}d}" for n in range(users)]


def main() -> int:
    from fabric_client.devnet.process import DevnetProcess

    tmp = tempfile.TemporaryDirectory(prefix="bench-rebuild-")
    data_dir = Path(DEVNET_DIR) if DEVNET_DIR else Path(tmp.name) / "devnet"
    if not DEVNET_DIR:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fabric_client.devnet.seed", "--data-dir", str(data_dir),
                        "--prefix", PREFIX, "--users", str(USERS), "--transfers", str(EVENTS - USERS)],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL, timeout=7200)
        print(f"devnet chain seeded = {EVENTS} transactions ({time.perf_counter() - started:.0f} s)")
    url = create_scratch_database("bench_rebuild")
    devnet = DevnetProcess(data_dir).start(timeout=120)
    env = {**os.environ, **devnet.env, "DATABASE_URL": url, "DEBUG": "true", "LOG_LEVEL": "WARNING",
           "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "bench.support.production_settings"}
    env.pop("FABRIC_TLS_CA_PATH", None)
    os.environ.update(env)
    try:
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
                       env=env, check=True, cwd=ROOT)
        import django

        django.setup()
        from django.db import connections

        from identity.models import User, UserProfile

        ids = [uuid.UUID(hex=i) for i in chain_user_ids(USERS)]
        User.objects.bulk_create([User(id=pk, email=f"{pk.hex}@example.com", password="!") for pk in ids])
        UserProfile.objects.bulk_create([
            UserProfile(user_id=pk, first_name="Chain", last_name="User", date_of_birth="1990-01-01",
                        nationality="NG" if n % 2 else "DE", status="APPROVED_PENDING_ONCHAIN")
            for n, pk in enumerate(ids)])
        connections.close_all()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "rebuild_projections"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - started
        progress = [line for line in done.stderr.splitlines() if line.startswith("[")]
        for line in progress[:: max(1, len(progress) // 5)] + progress[-1:]:
            print(f"  {line}")
        if done.returncode != 0:
            sys.exit(f"rebuild_projections failed ({done.returncode}): {done.stderr[-2000:]}")
        print(f"  {done.stdout.strip()}")
        match = re.search(r"(\d+) events in ([0-9.]+)s", done.stdout)
        events, seconds = int(match[1]), float(match[2])
    finally:
        devnet.kill()
        drop_scratch_database(url)
        tmp.cleanup()
    rate = events / seconds
    projected = 1_000_000 / rate
    print(f"rebuild_projections events = {events}")
    print(f"rebuild_projections time = {seconds:.1f} s (command wall time with start-up {wall:.1f} s)")
    print(f"rebuild_projections rate = {rate:,.0f} events/s")
    print(f"rebuild of 1,000,000 events = {projected:.0f} s {'measured' if events >= 1_000_000 else 'projected'} "
          f"(target <= {TARGET_SECONDS_PER_MILLION:.0f})")
    return 0 if projected <= TARGET_SECONDS_PER_MILLION else 1


if __name__ == "__main__":
    sys.exit(main())
