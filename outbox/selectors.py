"""Reads of the outbox: one command for its owner, and the operators' numbers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone

from gxbackend.exceptions import NotFound
from outbox.models import UNFINISHED, CommandStatus, OutboxCommand


def command_get_for_user(*, command_id: uuid.UUID, user: Any) -> OutboxCommand:
    """The command, if ``user`` requested it or is staff; otherwise NotFound (never reveal that it exists)."""
    rows = OutboxCommand.objects.filter(command_id=command_id)
    if not user.is_staff:
        rows = rows.filter(requested_by=user)
    command = rows.first()
    if command is None:
        raise NotFound("No such command.")
    return command


@dataclass(frozen=True)
class OutboxStats:
    by_status: dict[str, int]
    queue_depth: int
    oldest_pending_at: datetime | None
    dead_letters: int

    @property
    def oldest_pending_age_seconds(self) -> float:
        if self.oldest_pending_at is None:
            return 0.0
        return max(0.0, (timezone.now() - self.oldest_pending_at).total_seconds())


def outbox_stats() -> OutboxStats:
    """Counts by status, the queue depth (unfinished commands), the oldest unfinished one and the dead letters."""
    by_status = {status: 0 for status in CommandStatus.values}
    for row in OutboxCommand.objects.values("status").annotate(n=Count("id")).order_by():
        by_status[row["status"]] = row["n"]
    unfinished = OutboxCommand.objects.filter(status__in=UNFINISHED).aggregate(oldest=Min("created_at"))
    dead = OutboxCommand.objects.aggregate(n=Count("id", filter=Q(dead_lettered=True)))
    return OutboxStats(
        by_status=by_status,
        queue_depth=sum(by_status[s] for s in UNFINISHED),
        oldest_pending_at=unfinished["oldest"],
        dead_letters=dead["n"],
    )


def dead_letters(limit: int = 50) -> list[OutboxCommand]:
    return list(OutboxCommand.objects.filter(dead_lettered=True).order_by("-updated_at")[:limit])
