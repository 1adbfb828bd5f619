"""The chaincode side of devnet: what a contract function sees of the ledger (Fabric's shim, in Python).

Reads come from *committed* state only: a transaction never sees its own writes (``get_state`` after
``put_state`` returns the committed value, as in Fabric). Every read records the version ``(block, txnum)`` of
what it saw, or ``None`` for an absent key, so the committer can detect MVCC read conflicts. ``set_event`` keeps
only the last call: Fabric stores at most one event per transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

Version = tuple[int, int]
"""(block number, transaction number) of the transaction that last wrote a key."""

StateReader = Callable[[str, str], tuple[bytes, Version] | None]
"""(namespace, key) → (value, version) from committed state, or None when absent."""


@dataclass(frozen=True)
class Response:
    """``peer.Response``: status 200 is success; status >= 400 is a chaincode error."""

    status: int
    message: str = ""
    payload: bytes = b""


def success(payload: bytes = b"") -> Response:
    return Response(200, "", payload)


def error(message: str, status: int = 500) -> Response:
    return Response(status, message, b"")


@dataclass(frozen=True)
class Event:
    name: str
    payload: bytes


class Stub:
    """One simulation of one transaction proposal."""

    def __init__(
        self,
        *,
        namespace: str,
        channel: str,
        tx_id: str,
        args: list[bytes],
        creator: bytes,
        transient: Mapping[str, bytes],
        read_state: StateReader,
    ) -> None:
        self.namespace = namespace
        self.channel = channel
        self.tx_id = tx_id
        self.args = args
        self.creator = creator
        self.transient = transient
        self._read_state = read_state
        self.reads: dict[str, Version | None] = {}
        self.writes: dict[str, bytes | None] = {}
        self.event: Event | None = None

    @property
    def function(self) -> str:
        return self.args[0].decode("utf-8") if self.args else ""

    @property
    def parameters(self) -> list[str]:
        return [arg.decode("utf-8") for arg in self.args[1:]]

    def get_state(self, key: str) -> bytes | None:
        found = self._read_state(self.namespace, key)
        if key not in self.reads:  # the first read's version is what validation compares
            self.reads[key] = found[1] if found else None
        return found[0] if found else None

    def put_state(self, key: str, value: bytes) -> None:
        if not key:
            raise ValueError("key must not be an empty string")
        self.writes[key] = value

    def del_state(self, key: str) -> None:
        self.writes[key] = None

    def set_event(self, name: str, payload: bytes) -> None:
        if not name:
            raise ValueError("event name can not be empty string")
        self.event = Event(name, payload)
