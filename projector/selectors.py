"""Reads of the projector's state and read models (docs/STYLE.md convention 6)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from gxbackend import progress
from gxbackend.exceptions import NotFound
from gxbackend.health import CheckResult
from projector.models import Checkpoint, Transaction, Wallet

QIRAT_PER_GX = 1_000_000


# The projector's checkpoint row (one chaincode's event stream).
CHECKPOINT_NAME = "gxcc"


def lag_blocks(*, height: int | None, block_number: int) -> int | None:
    """Blocks the read models are behind the chain tip; ``None`` when the height is unknown.

    ``block_number`` is the checkpoint's next block to read. Block 0 (the channel's genesis configuration block)
    never carries chaincode events, so a fresh chain of height 1 is not behind.
    """
    if height is None:
        return None
    return max(0, height - max(block_number, 1))


def gx(qirat: int) -> str:
    """Qirat as a GX decimal string with all six places (``500000000`` → ``"500.000000"``)."""
    return str((Decimal(qirat) / QIRAT_PER_GX).quantize(Decimal("0.000001")))


def projection_lag_check() -> CheckResult:
    """The API's /readyz report of projection lag in **blocks**, from the height the projector stored; not ok
    above ``PROJECTION_LAG_THRESHOLD_BLOCKS``. It fails readiness only with ``READYZ_FAIL_ON_PROJECTION_LAG``
    (projector/apps.py); otherwise it is a warning in the body.

    No Fabric call per probe. An idle chain has lag 0 and stays ready. A stored height older than
    ``PROJECTOR_HEIGHT_STALE_SECONDS`` (projector down or Fabric unreachable) is still compared, as a lower
    bound of the true lag, and flagged in the detail; it alone does not fail readiness, since the read models
    are still correct up to the checkpoint and failing every API pod would turn a projector outage into an
    API outage. No stored height yet (the projector never ran): ready, said in the detail.
    """
    checkpoint = Checkpoint.objects.filter(name=CHECKPOINT_NAME).first()
    threshold = settings.PROJECTION_LAG_THRESHOLD_BLOCKS
    if checkpoint is None or checkpoint.chain_height is None:
        return CheckResult(True, "chain height not known yet (projector has not polled it)")
    lag = lag_blocks(height=checkpoint.chain_height, block_number=checkpoint.block_number) or 0
    notes = []
    if checkpoint.chain_height_at is not None:
        age = (timezone.now() - checkpoint.chain_height_at).total_seconds()
        if age > settings.PROJECTOR_HEIGHT_STALE_SECONDS:
            notes.append(f"chain height is stale ({age:.0f}s old)")
    if checkpoint.error:
        notes.append(f"projector stuck at tx {checkpoint.error_tx_id or '?'}: {checkpoint.error[:300]}")
    detail = (f"projection {lag} block{'' if lag == 1 else 's'} behind chain height {checkpoint.chain_height} "
              f"(threshold {threshold})")
    if notes:
        detail += "; " + "; ".join(notes)
    return CheckResult(lag <= threshold, detail)


def wallet_for_user(*, user_id: uuid.UUID) -> Wallet:
    wallet = Wallet.objects.filter(user_id=user_id).first()
    if wallet is None:
        raise NotFound("This user has no wallet yet (not registered on-chain).", code="wallet_not_found")
    return wallet


def transactions_for_user(*, user_id: uuid.UUID, kind: str | None = None, since: datetime | None = None,
                          until: datetime | None = None) -> QuerySet[Transaction]:
    """A wallet's transaction rows, newest first (in chain order: rows are inserted block by block)."""
    rows = Transaction.objects.filter(wallet_id=user_id)
    if kind:
        rows = rows.filter(kind=kind)
    if since is not None:
        rows = rows.filter(block_time__gte=since)
    if until is not None:
        rows = rows.filter(block_time__lt=until)
    return rows.order_by("-id")


# --- read your own writes (gxbackend.progress) ------------------------------------------------------------
def checkpoint_block() -> int | None:
    """The last block whose every event is in the read models; ``None`` before the first one.

    The checkpoint stores the *next* block to read, so this is one less (a block the projector stopped in the
    middle of, at a malformed event, does not count).
    """
    next_block = Checkpoint.objects.filter(name=CHECKPOINT_NAME).values_list("block_number", flat=True).first()
    return next_block - 1 if next_block else None


def wait_for_block(block: int, *, timeout: float) -> int | None:
    """Waits up to ``timeout`` seconds until the read models have applied ``block``; returns
    :func:`checkpoint_block` (``>= block`` when they have). Sleeps on the projector's ``gx_checkpoint``
    notification, never polls PostgreSQL; ``timeout=0`` only looks."""
    current = checkpoint_block()
    if (current is not None and current >= block) or timeout <= 0:
        return current
    deadline = time.monotonic() + timeout
    with progress.listener().subscribe(after_block=block) as subscription:
        while True:
            subscription.arm()
            current = checkpoint_block()
            if (current is not None and current >= block) or not subscription.sleep(deadline):
                return current
