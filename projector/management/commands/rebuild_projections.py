"""``manage.py rebuild_projections``: rebuild every read model from block 0 through the incremental path.

Resets the read models and the checkpoint in one transaction, then applies the chain as ``run_projector``
catches up: blocks are folded ahead on the stream's thread and the ones already queued are applied together
with :func:`projector.services.apply_blocks` (one transaction each, the very function the worker uses, so the
result is the incremental result), printing a progress line (blocks, events/s, ETA) about once a second. It
stops at the chain height read at the start, or when no further event arrives for ``--idle-timeout`` seconds
(the last blocks carried no events). Each batch commits with its checkpoint, so an interrupted rebuild is
resumed by ``run_projector``. It refuses to run while a projector holds the leader lock: stop it first.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from projector.leader import LeaderLock
from projector.management.commands.run_projector import network_from_settings
from projector.services import CHECKPOINT_NAME, apply_blocks, reset_projections, store_chain_height
from projector.worker import MAX_BATCH_EVENTS, StreamReader

# Blocks queued ahead of the writes and applied together. Larger than the live worker's 64: every wallet a batch
# touches is updated once per batch (a 64-block batch of a busy chain touches most wallets), so batches of up
# to MAX_BATCH_EVENTS events update each wallet several times less often. The end state does not depend on it.
QUEUE_BLOCKS = 1024


class Command(BaseCommand):
    help = "Rebuild UserProfile chain state, Wallet and Transaction from block 0 (stop run_projector first)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--idle-timeout", type=float, default=5.0,
                            help="stop when no event arrives for this many seconds (default 5)")

    def handle(self, *args: Any, **options: Any) -> None:
        lock = LeaderLock(CHECKPOINT_NAME)
        if not lock.try_acquire():
            raise CommandError("a projector is running (it holds the leader lock): stop it, then rebuild")
        try:
            self.rebuild(idle_timeout=options["idle_timeout"])
        finally:
            lock.release()

    def rebuild(self, *, idle_timeout: float) -> None:
        network = network_from_settings()
        height = network.chain_info(timeout=settings.FABRIC_EVALUATE_TIMEOUT).height
        last_block = height - 1
        reset_projections()
        reader = StreamReader(network.chaincode_event_blocks(settings.FABRIC_CHAINCODE, start_block=0),
                              depth=QUEUE_BLOCKS, prepare=True)
        started = last_print = time.monotonic()
        events = blocks = 0
        block_number = -1
        try:
            while block_number < last_block:
                item = reader.get_batch(idle_timeout, max_blocks=QUEUE_BLOCKS, max_events=MAX_BATCH_EVENTS)
                if item is None:
                    break
                if isinstance(item, Exception):
                    raise CommandError(f"event stream failed at block {block_number + 1}: {item} "
                                       "(the checkpoint is consistent: run_projector continues from it)")
                if not isinstance(item, list):  # the stream ended
                    break
                # Blocks after the height read at the start are left to run_projector.
                batch = [block for block in item if block.block_number <= last_block]
                if not batch:
                    break
                results = apply_blocks(batch)
                if results[-1].malformed is not None:
                    raise CommandError(f"stopped: {results[-1].malformed} (see manage.py projector_status)")
                block_number = batch[-1].block_number
                blocks += len(batch)
                events += sum(len(block.events) for block in batch)
                if len(batch) < len(item):
                    break
                now = time.monotonic()
                if now - last_print >= 1.0:
                    last_print = now
                    self.stderr.write(self.progress(block_number, last_block, events, now - started))
        finally:
            reader.close()
        store_chain_height(network.chain_info(timeout=settings.FABRIC_EVALUATE_TIMEOUT).height)
        elapsed = time.monotonic() - started
        self.stderr.write(self.progress(max(block_number, last_block), last_block, events, elapsed))
        self.stdout.write(self.style.SUCCESS(
            f"rebuilt from block 0 to {last_block}: {blocks} blocks with events, {events} events "
            f"in {elapsed:.1f}s"))

    @staticmethod
    def progress(block_number: int, last_block: int, events: int, elapsed: float) -> str:
        done = max(block_number, 0) + 1
        total = max(last_block + 1, 1)
        rate = events / elapsed if elapsed > 0 else 0.0
        blocks_per_s = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / blocks_per_s if blocks_per_s > 0 else 0.0
        width = 30
        filled = int(width * min(done, total) / total)
        return (f"[{'#' * filled}{'.' * (width - filled)}] block {min(done, total)}/{total} "
                f"({100 * min(done, total) / total:.0f}%), {events} events, {rate:,.0f} events/s, ETA {eta:.0f}s")
