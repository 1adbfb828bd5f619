"""Chaincode event streams (``gateway.Gateway/ChaincodeEvents``).

The gateway sends one message per block that holds matching events, only for VALID transactions, at most one
event per transaction. Streams are long-lived and have no deadline unless one is given; :meth:`EventStream.close`
cancels them from any thread. A broken stream raises :class:`ChaincodeEventsError`; reconnect from the
checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from fabric_protos.gateway import gateway_pb2
from google.protobuf.message import Message

from fabric_client._rpc import iterate_stream
from fabric_client.errors import ChaincodeEventsError, GatewayError

T = TypeVar("T")


@dataclass(frozen=True)
class ChaincodeEvent:
    """One event set by a committed, VALID transaction."""

    block_number: int
    transaction_id: str
    chaincode_name: str
    event_name: str
    payload: bytes


@dataclass(frozen=True)
class ChaincodeEventBlock:
    """All matching events of one block, in transaction order (apply them in one database transaction)."""

    block_number: int
    events: tuple[ChaincodeEvent, ...]


class EventStream(Generic[T]):
    """An iterator over a server stream that can be closed (cancelled) from any thread; a failure of the stream
    raises ``error_type``."""

    def __init__(self, call: grpc.Call, convert: Callable[[Iterator[Message]], Iterator[T]],
                 error_type: type[GatewayError] = ChaincodeEventsError) -> None:
        self._call = call
        self._items = convert(iterate_stream(call, error_type))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._items)

    def close(self) -> None:
        """Cancel the stream; iteration then ends without error."""
        self._call.cancel()

    def __enter__(self) -> EventStream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def event_blocks(
    responses: Iterator[gateway_pb2.ChaincodeEventsResponse],
) -> Iterator[ChaincodeEventBlock]:
    """Turn stream messages into :class:`ChaincodeEventBlock` values."""
    for response in responses:
        yield ChaincodeEventBlock(
            response.block_number,
            tuple(
                ChaincodeEvent(response.block_number, e.tx_id, e.chaincode_id, e.event_name, e.payload)
                for e in response.events
            ),
        )


def events(responses: Iterator[gateway_pb2.ChaincodeEventsResponse]) -> Iterator[ChaincodeEvent]:
    """Turn stream messages into single :class:`ChaincodeEvent` values, in ledger order."""
    for block in event_blocks(responses):
        yield from block.events
