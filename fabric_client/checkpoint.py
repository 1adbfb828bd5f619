"""Checkpoints for resuming a chaincode event stream without duplicates or gaps.

Same semantics as the official SDK checkpointers: after processing an event store
``(event.block_number, event.transaction_id)``; after processing a whole block ``n`` store ``(n + 1, None)``.
Resuming re-reads the checkpoint block and skips everything up to and including the stored transaction.
A projector that keeps its checkpoint in its own database implements :class:`Checkpoint` with two attributes.
"""

from __future__ import annotations

from typing import Protocol

from fabric_client.events import ChaincodeEvent


class Checkpoint(Protocol):
    """Where to resume: the block to (re)read and the last transaction already processed in it."""

    @property
    def block_number(self) -> int | None: ...

    @property
    def transaction_id(self) -> str | None: ...


class InMemoryCheckpointer:
    """A :class:`Checkpoint` kept in memory (for tests and for consumers that persist it themselves)."""

    def __init__(self, block_number: int | None = None, transaction_id: str | None = None) -> None:
        self.block_number: int | None = block_number
        self.transaction_id: str | None = transaction_id

    def checkpoint_block(self, block_number: int) -> None:
        """Block ``block_number`` is fully processed: resume at the next block."""
        self.block_number = block_number + 1
        self.transaction_id = None

    def checkpoint_transaction(self, block_number: int, transaction_id: str) -> None:
        """Transaction ``transaction_id`` of ``block_number`` is processed: resume right after it."""
        self.block_number = block_number
        self.transaction_id = transaction_id

    def checkpoint_chaincode_event(self, event: ChaincodeEvent) -> None:
        """The event is processed: resume right after its transaction."""
        self.checkpoint_transaction(event.block_number, event.transaction_id)
