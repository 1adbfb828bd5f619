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
    wallet = models.ForeignKey(Wallet, on_delete=models.CASCADE, related_name="transactions")
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
        indexes = [models.Index(fields=["wallet", "-block_number", "-id"], name="projector_tx_wallet_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_qirat} ({self.tx_id[:12]})"
