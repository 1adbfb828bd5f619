"""``manage.py projector_status``: where the projector stands, how far behind it is, and why it is stuck."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from projector.leader import LeaderLock
from projector.services import CHECKPOINT_NAME, get_checkpoint, lag_blocks


class Command(BaseCommand):
    help = "Show the projector checkpoint, chain height, lag in blocks, leader presence and any stored error."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON object instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = get_checkpoint()
        lock = LeaderLock(CHECKPOINT_NAME)
        leader = lock.held_by_someone() if lock.supported else None
        lock.release()
        lag = lag_blocks(height=checkpoint.chain_height, block_number=checkpoint.block_number)
        status = {
            "checkpoint_block": checkpoint.block_number,
            "checkpoint_transaction_id": checkpoint.transaction_id,
            "chain_height": checkpoint.chain_height,
            "chain_height_at": checkpoint.chain_height_at.isoformat() if checkpoint.chain_height_at else None,
            "lag_blocks": lag,
            "lag_threshold_blocks": settings.PROJECTION_LAG_THRESHOLD_BLOCKS,
            "last_event_at": checkpoint.last_event_at.isoformat() if checkpoint.last_event_at else None,
            "leader_running": leader,
            "stuck": bool(checkpoint.error),
            "error": checkpoint.error,
            "error_tx_id": checkpoint.error_tx_id,
            "error_since": checkpoint.error_since.isoformat() if checkpoint.error_since else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(status))
            return
        self.stdout.write(f"checkpoint: block {checkpoint.block_number}"
                          + (f" after tx {checkpoint.transaction_id}" if checkpoint.transaction_id else ""))
        self.stdout.write(f"chain height: {checkpoint.chain_height if checkpoint.chain_height is not None else '?'}"
                          f" (polled {status['chain_height_at'] or 'never'})")
        self.stdout.write(f"lag: {lag if lag is not None else '?'} blocks "
                          f"(threshold {settings.PROJECTION_LAG_THRESHOLD_BLOCKS})")
        self.stdout.write(f"last event applied: {status['last_event_at'] or 'never'}")
        self.stdout.write("leader: " + {True: "running", False: "none (no projector holds the lock)",
                                        None: "n/a (SQLite)"}[leader])
        if checkpoint.error:
            self.stdout.write(self.style.ERROR(
                f"STUCK since {status['error_since']} at tx {checkpoint.error_tx_id}: {checkpoint.error}"))
        else:
            self.stdout.write("state: ok")
