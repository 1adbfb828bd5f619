"""``python -m fabric_client.devnet.seed``: fill a devnet data directory with a large, all-VALID chain fast.

    python -m fabric_client.devnet.seed --data-dir var/devnet --users 1000 --transfers 99000

Creates ``--users`` users (ids ``<prefix>`` + a number, nationalities NG and DE alternating) then makes
``--transfers`` small transfers between pseudo-random pairs (fixed ``--random-seed``), through
:meth:`DevnetServer.seed`: real signed proposals, endorsements and commit validation, without gRPC. Run it
while devnet is stopped (or use ``DevnetServer.seed`` in the running process); then start devnet on the same
directory. One event per transaction, so users + transfers events.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Iterator

from fabric_client.devnet.server import DevnetServer


def workload(prefix: str, users: int, transfers: int, random_seed: int) -> Iterator[tuple[str, list[str]]]:
    """CreateUser for every user, then 1000-qirat transfers between distinct random users."""
    ids = [f"{prefix}{n:0{max(1, 32 - len(prefix))}d}" for n in range(users)]
    for n, user_id in enumerate(ids):
        biometric = hashlib.sha256(f"{prefix}:{n}".encode()).hexdigest()
        yield "IdentityContract:CreateUser", [user_id, biometric, "NG" if n % 2 else "DE", "30"]
    rng = random.Random(random_seed)
    for _ in range(transfers):
        sender, recipient = rng.sample(ids, 2)
        yield "TokenomicsContract:TransferWithFees", [sender, recipient, "1000", "", "seed", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fabric_client.devnet.seed", description=__doc__)
    parser.add_argument("--data-dir", default="var/devnet")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--transfers", type=int, default=0)
    parser.add_argument("--prefix", default="seed", help="user id prefix (change it to seed the same chain again)")
    parser.add_argument("--block-size", type=int, default=500)
    parser.add_argument("--random-seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.users < 2 and args.transfers:
        parser.error("transfers need at least 2 users")
    devnet = DevnetServer(args.data_dir, port=0)  # not started: only its endorser and committer are used
    first_block = devnet.ledger.height
    started = time.perf_counter()
    try:
        tx_ids = devnet.seed(
            workload(args.prefix, args.users, args.transfers, args.random_seed), block_size=args.block_size
        )
    finally:
        devnet.stop(grace=0)
    elapsed = time.perf_counter() - started
    sys.stdout.write(
        f"seeded {len(tx_ids)} transactions in blocks {first_block}..{devnet.ledger.height - 1} "
        f"({len(tx_ids) / elapsed:.0f} tx/s)\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
