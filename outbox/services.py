"""Writes of the outbox: enqueue (inside the caller's transaction)."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from outbox.models import CommandType, OutboxCommand


def outbox_enqueue(
    *,
    command_type: CommandType | str,
    aggregate_id: str,
    payload: dict[str, Any],
    idempotency_key: str | None = None,
    request_id: str = "",
    requested_by: Any = None,
) -> OutboxCommand:
    """Adds a command for the chain; must run inside the caller's ``transaction.atomic()``."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_enqueue must be called inside the caller's transaction")
    return OutboxCommand.objects.create(
        command_type=CommandType(command_type),
        aggregate_id=aggregate_id,
        payload=payload,
        idempotency_key=idempotency_key or uuid.uuid4().hex,
        request_id=request_id,
        requested_by=requested_by,
        max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
        next_attempt_at=timezone.now(),
    )
