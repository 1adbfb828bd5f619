"""Read models built from chain events, and the checkpoint that is written with them.

Amounts are integer qirat (1 GX = 1,000,000 qirat) in ``BigIntegerField``s, never floats.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Checkpoint(models.Model):
    """Where a projection stands on the chain: the SDK checkpointer's (block, tx id), plus what went wrong."""

    name = models.CharField(max_length=64, primary_key=True)
    block_number = models.BigIntegerField(default=0, help_text="next block to read from (re-read on resume)")
    transaction_id = models.CharField(max_length=64, blank=True, default="",
                                      help_text="last processed transaction in that block; empty: none")
    last_event_at = models.DateTimeField(null=True, blank=True)
    chain_height = models.BigIntegerField(null=True, blank=True)
    chain_height_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="", help_text="why the projector is stuck, if it is")
    error_tx_id = models.CharField(max_length=64, blank=True, default="")
    error_since = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ block {self.block_number}"


class ProjectedBlock(models.Model):
    """When this database first applied a block: the block time of its read-model rows.

    The ChaincodeEvents stream carries no block timestamp, so ``Transaction.block_time`` and
    ``UserProfile.onchain_registered_at`` use the time the block was first applied here. The row survives
    ``rebuild_projections``, so a rebuild writes the same times as the incremental run did.
    """

    block_number = models.BigIntegerField(primary_key=True)
    applied_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"block {self.block_number} applied {self.applied_at:%Y-%m-%d %H:%M:%S}"


class Wallet(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="wallet")
    balance_qirat = models.BigIntegerField(default=0)
    frozen = models.BooleanField(default=False)
    frozen_reason = models.CharField(max_length=140, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"wallet of {self.user_id}: {self.balance_qirat} qirat"


class TransactionKind(models.TextChoices):
    GENESIS = "GENESIS"
    SENT = "SENT"
    RECEIVED = "RECEIVED"
    FEE = "FEE"


class Transaction(models.Model):
    # No database-level FK: a deferred FK check costs a lookup per row at COMMIT, a third of the block-apply
    # time measured in bench/projector.py. apply_blocks writes the wallet in the same transaction first.
    # No index of its own either: (wallet, -id) below serves every lookup by wallet, and a redundant index
    # costs ~15 % of the server's insert time per row.
    wallet = models.ForeignKey(Wallet, on_delete=models.DO_NOTHING, related_name="transactions",
                               db_constraint=False, db_index=False)
    kind = models.CharField(max_length=16, choices=TransactionKind.choices)
    amount_qirat = models.BigIntegerField()
    fee_qirat = models.BigIntegerField(default=0)
    counterparty_id = models.CharField(max_length=64, blank=True, default="",
                                       help_text="the other side's on-chain user id")
    remark = models.CharField(max_length=140, blank=True, default="")
    tx_id = models.CharField(max_length=64)
    block_number = models.BigIntegerField()
    block_time = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Handlers upsert on this key, so replaying a block changes nothing.
            models.UniqueConstraint(fields=["tx_id", "kind", "wallet"], name="projector_tx_unique_per_kind"),
        ]
        indexes = [
            # GET /users/:id/transactions: newest first per wallet (cursor on id); kind and time filter the scan.
            models.Index(fields=["wallet", "-id"], name="projector_tx_wallet_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_qirat} ({self.tx_id[:12]})"
