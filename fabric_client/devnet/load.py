"""Submit many transactions with many in flight: how to build a large devnet chain quickly.

Throughput comes from concurrency, not from a faster loop: each transaction waits about one block timeout
for its commit, so keep ``in_flight`` well above ``block_size`` (and start devnet with a larger
``--block-size`` for bulk loads, e.g. 200). Example::

    statuses = submit_many(contract, [("CreateUser", [uid, bio, "NG", "30"]) for uid, bio in users], in_flight=64)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from fabric_client._builders import Arg
from fabric_client.gateway import Contract
from fabric_client.transaction import Status


def submit_and_wait(contract: Contract, function: str, args: Sequence[Arg]) -> Status:
    """Endorse, submit and wait for one transaction; return its status (VALID or not)."""
    return contract.new_proposal(function, args).endorse().submit().status()


def submit_many(
    contract: Contract, calls: Iterable[tuple[str, Sequence[Arg]]], *, in_flight: int = 32
) -> list[Status]:
    """Run every ``(function, args)`` call with up to ``in_flight`` transactions pending; statuses in order.

    The first gateway error (endorsement refused, deadline...) is raised once the others have finished.
    """
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="devnet-load") as pool:
        futures = [pool.submit(submit_and_wait, contract, function, args) for function, args in calls]
        return [future.result() for future in futures]
