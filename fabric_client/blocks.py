"""Filtered block events: the peer's ``protos.Deliver/DeliverFiltered`` stream (docs/FABRIC_GATEWAY.md §3).

Each message is one block with, per transaction, its id and validation code (VALID, MVCC_READ_CONFLICT,
DUPLICATE_TXID...) and no payloads: what a client needs to learn the outcome of many transactions from one
stream instead of a CommitStatus call each. Blocks arrive in order without gaps; a stream that breaks raises
:class:`BlockEventsError`, and a new one resumes from the block after the last one received.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from fabric_protos.common import common_pb2
from fabric_protos.peer import events_pb2, transaction_pb2

from fabric_client.errors import BlockEventsError, validation_code_name
from fabric_client.events import EventStream


@dataclass(frozen=True)
class FilteredTransaction:
    """One transaction of a block as the filtered stream shows it."""

    transaction_id: str
    code: int  # TxValidationCode

    @property
    def successful(self) -> bool:
        return self.code == transaction_pb2.VALID

    @property
    def code_name(self) -> str:
        return validation_code_name(self.code)


@dataclass(frozen=True)
class FilteredBlock:
    number: int
    transactions: tuple[FilteredTransaction, ...]


#: A filtered-block stream: iterate it; ``close()`` from any thread ends the iteration without error. It ends by
#: itself only when the peer reports SUCCESS (its stop block reached).
BlockStream = EventStream[FilteredBlock]


def open_block_stream(call: grpc.Call) -> BlockStream:
    return EventStream(call, _filtered_blocks, BlockEventsError)


def _filtered_blocks(responses: Iterator[events_pb2.DeliverResponse]) -> Iterator[FilteredBlock]:
    for response in responses:
        kind = response.WhichOneof("Type")
        if kind == "filtered_block":
            block = response.filtered_block
            yield FilteredBlock(block.number, tuple(
                FilteredTransaction(t.txid, t.tx_validation_code) for t in block.filtered_transactions))
        elif kind == "status":
            if response.status == common_pb2.SUCCESS:
                return
            name = common_pb2.Status.Name(response.status) if response.status in common_pb2.Status.values() \
                else f"UNKNOWN_{response.status}"
            raise BlockEventsError(f"the peer ended the block stream with status {name}", deliver_status=name)
        else:  # full blocks were not asked for
            raise BlockEventsError(f"unexpected {kind or 'empty'} message on a filtered block stream")
