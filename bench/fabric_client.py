"""Benchmark of fabric_client, measured side by side in one run.

1. Proposals built and signed per second vs raw ``cryptography`` ECDSA P-256 signatures per second (the
   floor: a proposal costs one signature plus protobuf building and low-S normalisation). Target ratio >= 0.5.
2. Submit-and-commit throughput (endorse → submit → commit status) against a devnet process this script
   starts (block timeout 250 ms, block size 10, as a small real network), with 1 and with 32 in flight.

Prints one figure per line (``name = value unit``); exits 1 when a target is missed.
Run: ``.venv/bin/python bench/fabric_client.py``
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from fabric_client import EcdsaSigner, X509Identity, connect
from fabric_client.devnet import pki
from fabric_client.devnet.load import submit_and_wait, submit_many
from fabric_client.devnet.process import DevnetProcess

ROUNDS = 31
SIGNING_OPS = 300
SIGNING_RATIO_TARGET = 0.5
IN_FLIGHT_SPEEDUP_TARGET = 4.0


def rate(operation: Callable[[], object], count: int) -> float:
    """Operations per second of this thread's CPU time: waiting for a core on a shared machine is not counted."""
    started = time.thread_time()
    for _ in range(count):
        operation()
    return count / (time.thread_time() - started)


def median_rates(operations: dict[str, Callable[[], object]], count: int) -> dict[str, float]:
    """Interleave the rounds of each operation so both see the same machine load."""
    samples: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(ROUNDS):
        for name, operation in operations.items():
            samples[name].append(rate(operation, count))
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_signing() -> bool:
    certificate, key = pki.issue(*pki.new_ca("bench-ca"), "bench-user", unit="client")
    from cryptography.hazmat.primitives import serialization

    identity = X509Identity("Org1MSP", certificate.public_bytes(serialization.Encoding.PEM))
    gateway = connect("127.0.0.1:1", identity, EcdsaSigner(key))  # channels connect lazily: nothing is sent
    contract = gateway.network("gxchannel").contract("gxcc", "TokenomicsContract")
    args = ["0f1e2d3c4b5a69788796a5b4c3d2e1f0", "aa1e2d3c4b5a69788796a5b4c3d2e1f0", "2500000", "", "rent", "k-1"]
    digest = os.urandom(32)
    algorithm = ec.ECDSA(Prehashed(hashes.SHA256()))
    medians = median_rates(
        {
            "raw": lambda: key.sign(digest, algorithm),
            "proposal": lambda: contract.new_proposal("TransferWithFees", args),
        },
        SIGNING_OPS,
    )
    gateway.close()
    ratio = medians["proposal"] / medians["raw"]
    print(f"raw ecdsa p-256 signatures = {medians['raw']:.0f} /s")
    print(f"proposals built and signed = {medians['proposal']:.0f} /s")
    print(f"proposal vs raw signature ratio = {ratio:.2f} (target >= {SIGNING_RATIO_TARGET})")
    return ratio >= SIGNING_RATIO_TARGET


def bench_throughput() -> bool:
    with tempfile.TemporaryDirectory() as data_dir, DevnetProcess(data_dir, block_timeout_ms=250) as devnet:
        identity = X509Identity.from_pem_file(devnet.env["FABRIC_MSP_ID"], devnet.env["FABRIC_CERT_PATH"])
        signer = EcdsaSigner.from_pem_file(devnet.env["FABRIC_KEY_PATH"])
        with connect(devnet.endpoint, identity, signer) as gateway:
            contract = gateway.network("gxchannel").contract("gxcc", "IdentityContract")
            users = (
                ("CreateUser", [f"bench{n:027d}", f"{n:064x}", "NG", "30"]) for n in range(1, 10**9)
            )
            submit_and_wait(contract, *next(users))  # warm-up: connection, caches

            started = time.perf_counter()
            sequential = [submit_and_wait(contract, *next(users)) for _ in range(12)]
            one = len(sequential) / (time.perf_counter() - started)

            batch = [next(users) for _ in range(640)]
            started = time.perf_counter()
            concurrent = submit_many(contract, batch, in_flight=32)
            many = len(concurrent) / (time.perf_counter() - started)
    valid = all(s.successful for s in sequential + concurrent)
    speedup = many / one
    print(f"submit and commit, 1 in flight = {one:.1f} tx/s")
    print(f"submit and commit, 32 in flight = {many:.1f} tx/s")
    print(f"32 vs 1 in flight throughput ratio = {speedup:.1f} (target >= {IN_FLIGHT_SPEEDUP_TARGET})")
    print(f"transactions committed valid = {'yes' if valid else 'no'}")
    return valid and speedup >= IN_FLIGHT_SPEEDUP_TARGET


def main() -> int:
    ok = bench_signing()
    ok = bench_throughput() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
