"""Reads of the outbox: one command for its owner, and the operators' numbers."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone

from gxbackend import progress
from gxbackend.counting import count_or_estimate
from gxbackend.exceptions import NotFound
from outbox.models import UNFINISHED, CommandStatus, OutboxCommand
from projector.selectors import checkpoint_block


def command_get_for_user(*, command_id: uuid.UUID, user: Any) -> OutboxCommand:
    """The command, if ``user`` requested it or is staff; otherwise NotFound (never reveal that it exists)."""
    rows = OutboxCommand.objects.filter(command_id=command_id)
    if not user.is_staff:
        rows = rows.filter(requested_by=user)
    command = rows.first()
    if command is None:
        raise NotFound("No such command.")
    return command


def visible_at_block(command: OutboxCommand) -> int | None:
    """The block a read must have applied to show the command's effect: its block once COMMITTED, else None."""
    return command.block_number if command.status == CommandStatus.COMMITTED else None


def command_visible(command: OutboxCommand, checkpoint: int | None) -> bool:
    """True when the read models show the command's outcome: COMMITTED in a block the projector has applied
    (``checkpoint`` is :func:`projector.selectors.checkpoint_block`), or FAILED (which changes nothing)."""
    if command.status == CommandStatus.FAILED:
        return True
    block = visible_at_block(command)
    return block is not None and checkpoint is not None and checkpoint >= block


def command_wait_visible(command: OutboxCommand, *, timeout: float) -> int | None:
    """Waits up to ``timeout`` seconds until ``command`` is visible (:func:`command_visible`), refreshing it in
    place; returns the checkpoint block it was last judged against. Sleeps on the submitter's ``gx_command``
    and then the projector's ``gx_checkpoint`` notifications (gxbackend.progress); ``timeout=0`` only looks."""
    checkpoint = checkpoint_block()
    if command_visible(command, checkpoint) or timeout <= 0:
        return checkpoint
    deadline = time.monotonic() + timeout
    with progress.listener().subscribe(command_pk=command.pk) as subscription:
        while True:
            subscription.arm()
            command.refresh_from_db()
            # Set before the checkpoint is read: a gx_checkpoint sent after that read wakes this waiter.
            subscription.after_block = visible_at_block(command)
            checkpoint = checkpoint_block()
            if command_visible(command, checkpoint) or not subscription.sleep(deadline):
                return checkpoint


@dataclass(frozen=True)
class OutboxStats:
    by_status: dict[str, int]
    queue_depth: int
    oldest_pending_at: datetime | None
    dead_letters: int
    #: statuses whose count is PostgreSQL's estimate (finished ones, on a large table)
    estimated: frozenset[str] = frozenset()

    @property
    def oldest_pending_age_seconds(self) -> float:
        if self.oldest_pending_at is None:
            return 0.0
        return max(0.0, (timezone.now() - self.oldest_pending_at).total_seconds())


def outbox_stats(*, finished: bool = True) -> OutboxStats:
    """Counts by status, the queue depth (unfinished commands), the oldest unfinished one and the dead letters.

    The table keeps every command (its rows are the transfers' idempotency record), so only what is bounded is
    read row by row: unfinished commands (the claim's partial index) and dead letters (their partial index).
    Finished counts (``finished``; the submitters' gauges skip them) are exact while the table is small and
    PostgreSQL's estimate when it is large (``gxbackend.counting``; listed in ``estimated``).
    """
    by_status = {status: 0 for status in CommandStatus.values}
    unfinished = OutboxCommand.objects.filter(status__in=UNFINISHED)
    for row in unfinished.values("status").annotate(n=Count("id")).order_by():
        by_status[row["status"]] = row["n"]
    oldest = unfinished.aggregate(oldest=Min("created_at"))["oldest"]
    estimated: set[str] = set()
    if finished:
        for status in (CommandStatus.COMMITTED, CommandStatus.FAILED):
            by_status[status], guessed = count_or_estimate(OutboxCommand.objects.filter(status=status))
            if guessed:
                estimated.add(status)
    else:
        for status in (CommandStatus.COMMITTED, CommandStatus.FAILED):
            del by_status[status]
    return OutboxStats(
        by_status=by_status,
        queue_depth=sum(by_status[s] for s in UNFINISHED),
        oldest_pending_at=oldest,
        dead_letters=OutboxCommand.objects.filter(dead_lettered=True).count(),
        estimated=frozenset(estimated),
    )


def dead_letters(limit: int = 50) -> list[OutboxCommand]:
    return list(OutboxCommand.objects.filter(dead_lettered=True).order_by("-updated_at")[:limit])
