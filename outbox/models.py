"""The outbox: commands for the chain, written in the caller's transaction and submitted by run_submitter.

A row's life: PENDING (claimable when ``next_attempt_at`` has passed and no earlier command of the same
aggregate is unfinished) → SUBMITTED (endorsed; tx id and signed envelope stored *before* Submit) →
COMMITTED (VALID) or FAILED (chaincode error, final validation code, or ``max_attempts`` reached:
``dead_lettered``). A lease (``locked_by``, ``locked_until``, ``lease_token``) says which submitter, and which
of its claims, works on it.
"""

from __future__ import annotations

import uuid

from django.db import models


class CommandType(models.TextChoices):
    CREATE_USER = "CREATE_USER"
    TRANSFER = "TRANSFER"
    FREEZE_WALLET = "FREEZE_WALLET"
    UNFREEZE_WALLET = "UNFREEZE_WALLET"


class CommandStatus(models.TextChoices):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    COMMITTED = "COMMITTED"
    FAILED = "FAILED"


UNFINISHED = (CommandStatus.PENDING, CommandStatus.SUBMITTED)


class OutboxCommand(models.Model):
    # The primary key is the enqueue order: per-aggregate order compares it. Clients see `command_id`.
    id = models.BigAutoField(primary_key=True)
    command_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    command_type = models.CharField(max_length=32, choices=CommandType.choices)
    aggregate_id = models.CharField(max_length=64, help_text="the user the command is about (order key)")
    payload = models.JSONField()
    idempotency_key = models.CharField(max_length=128, unique=True)
    request_id = models.CharField(max_length=128, blank=True, default="")
    requested_by = models.ForeignKey("identity.User", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="outbox_commands")
    status = models.CharField(max_length=16, choices=CommandStatus.choices, default=CommandStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=10)
    next_attempt_at = models.DateTimeField()
    locked_by = models.CharField(max_length=128, blank=True, default="")
    locked_until = models.DateTimeField(null=True, blank=True)
    # New at every claim; the holder's writes carry it, so a claim that outlived its lease (even one of the
    # same process) can no longer write once the row was claimed again (outbox.services._fenced).
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    tx_id = models.CharField(max_length=64, blank=True, default="")
    signed_envelope = models.BinaryField(null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    validation_code = models.CharField(max_length=64, blank=True, default="")
    chaincode_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    dead_lettered = models.BooleanField(default=False)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # run_submitter's claim query walks unfinished rows in enqueue order and stops after a batch
            # (outbox.services.outbox_claim_commands); rows backing off are filtered on the way.
            # `next_attempt_at IS NOT NULL` is always true (the column is NOT NULL): it is there so that only a
            # query bounding next_attempt_at (the claim's "due" filter) can use this index. The planner believes
            # the unfinished rows are few and chose this index, filtering on aggregate_id, for the per-aggregate
            # queries below too, reading every unfinished row of every user (and every finished one not yet
            # vacuumed away, as many as 20 % of the table before autovacuum runs) at every probe: 22-52 ms per
            # claim and 12 ms per transfer request with 10^4 pending and 2·10^5 dead entries on a 10^6-row
            # outbox, against 0.2 and 0.1 ms through outbox_unfinished_agg_idx (bench/scale.py, README).
            models.Index(
                fields=["id"],
                name="outbox_claim_due_idx",
                condition=models.Q(status__in=["PENDING", "SUBMITTED"], next_attempt_at__isnull=False),
            ),
            # The per-aggregate order check, "is this the first unfinished command of its aggregate?" (one index
            # probe per candidate in outbox_claim_commands), and a user's commands in flight (a transfer's funds
            # check, projector.transfers.held_by_transfers_in_flight; a pending freeze or unfreeze).
            models.Index(
                fields=["aggregate_id", "id"],
                name="outbox_unfinished_agg_idx",
                condition=models.Q(status__in=["PENDING", "SUBMITTED"]),
            ),
            # A sender's transfers committed from a block on (the ones the projector may not have applied yet):
            # projector.transfers.held_by_transfers_in_flight, on every transfer request.
            models.Index(
                fields=["aggregate_id", "block_number"],
                name="outbox_committed_transfer_idx",
                condition=models.Q(status="COMMITTED", command_type="TRANSFER"),
            ),
            # outbox_status and the outbox_dead_letters gauge: the dead letters, newest first.
            models.Index(
                fields=["-updated_at"],
                name="outbox_dead_letter_idx",
                condition=models.Q(dead_lettered=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.command_type} {self.command_id} ({self.status})"
