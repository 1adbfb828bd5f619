"""Projector throughput: events applied per second vs plain batched INSERTs of the same rows (PostgreSQL).

A chain of ``--events`` (default 100,000) events — UserCreated for every user, then transfers between
disjoint pairs, a few freezes — is built in memory as the ChaincodeEvents stream delivers it (one
``ChaincodeEventBlock`` per block, ``--block-size`` events each) and applied by the production loop,
``projector.worker.Projector.step`` (what ``manage.py run_projector`` calls), over a scripted network serving
those blocks: leader lock, the stream read by its prefetch thread, and per step the next block with the
blocks already queued behind it applied in one transaction by ``projector.services.apply_blocks`` (payload
parsing and validation, bulk upserts, checkpoint) — the path the worker takes when it catches up. The heap is
settled first as ``manage.py run_projector`` does after its setup (``gxbackend.workers.settle_heap``).

The floor is the same Transaction rows (the table then holds exactly what the projection wrote) written with
plain batched INSERTs and nothing else: one parameterised single-row ``INSERT ... VALUES`` run with
psycopg's ``executemany`` on a server-side-binding cursor (prepared once, pipelined, binary parameters:
psycopg's standard way to batch inserts; Django's own cursor would quote every value into the SQL text in
Python, which measures client-side quoting rather than inserting), one transaction per block, with no
payload parsing, no wallets, no profiles and no checkpoint. Runs in a throwaway test database.

Prints ``name = value unit`` lines and ``name ratio = x (target >= t)``; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gxbackend.settings")
os.environ.setdefault("DEBUG", "true")

import django
import psycopg

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from fabric_client.events import ChaincodeEvent, ChaincodeEventBlock  # noqa: E402

TARGET_RATIO = 0.5
TARGET_RATE = 20_000.0


def tx_id(n: int) -> str:
    return hashlib.sha256(f"bench-{n}".encode()).hexdigest()


def build_chain(users: list[uuid.UUID], total: int, block_size: int) -> list[ChaincodeEventBlock]:
    rng = random.Random(7)
    balances = {u.hex: 500_000_000 for u in users}
    events: list[tuple[str, dict]] = [("UserCreated", {"v": 1, "userId": u.hex, "nationality": "NG",
                                                       "genesisAmount": "500000000", "balance": "500000000"})
                                      for u in users]
    ids = [u.hex for u in users]
    while len(events) < total:
        if rng.random() < 0.01:
            events.append(("WalletFrozen", {"v": 1, "userId": rng.choice(ids), "reason": "bench"}))
            continue
        a, b = rng.sample(ids, 2)
        amount = rng.randint(1, 200) * 1_000_000
        fee = amount * 5 // 10_000 if amount >= 3_000_000 else 0
        if balances[a] < amount + fee:
            a, b = b, a
            if balances[a] < amount + fee:
                continue
        balances[a] -= amount + fee
        balances[b] += amount
        events.append(("TransferWithFeesCompleted", {
            "v": 1, "fromId": a, "toId": b, "amount": str(amount), "fee": str(fee), "netReceived": str(amount),
            "remark": "bench", "idempotencyKey": "", "fromBalance": str(balances[a]), "toBalance": str(balances[b]),
            "replayed": False}))
    blocks = []
    for start in range(0, len(events), block_size):
        number = start // block_size + 1
        blocks.append(ChaincodeEventBlock(number, tuple(
            ChaincodeEvent(number, tx_id(start + i), "gxcc", name, json.dumps(payload).encode())
            for i, (name, payload) in enumerate(events[start:start + block_size]))))
    return blocks


def make_users(count: int) -> list[uuid.UUID]:
    from identity.models import ProfileStatus, User, UserProfile

    ids = [uuid.uuid4() for _ in range(count)]
    User.objects.bulk_create([User(id=i, email=f"{i.hex}@bench.example", password="!") for i in ids])
    UserProfile.objects.bulk_create([
        UserProfile(user_id=i, first_name="B", last_name="U", date_of_birth=datetime.date(1990, 1, 1),
                    nationality="NG", status=ProfileStatus.APPROVED_PENDING_ONCHAIN) for i in ids])
    return ids


def run_projection(blocks: list[ChaincodeEventBlock]) -> float:
    from gxbackend.workers import settle_heap
    from projector.testing import ScriptedNetwork
    from projector.worker import Projector

    # As run_projector does after its setup. It also takes the in-memory chain out of the collector's walks,
    # which is what a real stream amounts to: those blocks would not be in the process at all.
    settle_heap()
    network = ScriptedNetwork(blocks)
    worker = Projector(network_factory=lambda: network, chaincode="gxcc", wait_timeout=1.0)
    end = blocks[-1].block_number + 1
    started = time.perf_counter()
    try:
        while worker.checkpoint is None or worker.checkpoint[0] < end:
            worker.step()
            assert not worker.stuck, worker.last_error
    finally:
        worker.close()
    return time.perf_counter() - started


def run_plain_inserts(rows_by_block: dict[int, list[tuple]]) -> float:
    sql = ("INSERT INTO projector_transaction (wallet_id, kind, amount_qirat, fee_qirat, counterparty_id, remark, "
           "tx_id, block_number, block_time, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    connection.ensure_connection()
    started = time.perf_counter()
    for number in sorted(rows_by_block):
        with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
            cursor.executemany(sql, rows_by_block[number])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--block-size", type=int, default=500)
    parser.add_argument("--users", type=int, default=2_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("bench/projector.py needs PostgreSQL: set DATABASE_URL", file=sys.stderr)
        return 2
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        from projector.models import Transaction

        users = make_users(args.users)
        blocks = build_chain(users, args.events, args.block_size)
        events = sum(len(b.events) for b in blocks)
        projected = run_projection(blocks)
        rows_by_block: dict[int, list[tuple]] = {}
        now = datetime.datetime.now(datetime.UTC)
        for row in Transaction.objects.values_list("wallet_id", "kind", "amount_qirat", "fee_qirat",
                                                   "counterparty_id", "remark", "tx_id", "block_number",
                                                   "block_time").iterator(chunk_size=5000):
            rows_by_block.setdefault(row[7], []).append((*row, now))
        row_count = sum(len(r) for r in rows_by_block.values())
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE projector_transaction")
        plain = run_plain_inserts(rows_by_block)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    rate = events / projected
    plain_rate = events / plain
    ratio = rate / plain_rate
    print(f"projector chain events = {events} events")
    print(f"projector blocks = {len(blocks)} blocks of {args.block_size} events")
    print(f"projector transaction rows = {row_count} rows")
    print(f"projector apply rate = {rate:,.0f} events/s")
    print(f"plain batched inserts rate = {plain_rate:,.0f} events/s")
    print(f"projector vs plain inserts ratio = {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"projector apply rate ratio = {rate / TARGET_RATE:.2f} (target >= 1.0: {TARGET_RATE:,.0f} events/s)")
    ok = ratio >= TARGET_RATIO and rate >= TARGET_RATE
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
