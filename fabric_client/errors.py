"""Typed errors of the Gateway client, with a retry verdict.

Mirrors the official SDKs: ``EndorseError``, ``SubmitError`` and ``CommitStatusError`` carry the gRPC status,
the transaction id and the per-peer :class:`ErrorDetail` list the gateway attaches; ``CommitError`` is not a
gRPC failure but a transaction that was ordered and committed with a validation code other than VALID.

``retryable`` answers "may trying again succeed?" following docs/FABRIC_GATEWAY.md §4. It is a verdict on the
*operation*: for Evaluate/Endorse always build and sign a fresh proposal per attempt (a stored proposal goes
stale after 15 minutes, see ``stale_proposal``); for Submit resend the same signed envelope; for CommitStatus
just ask again. No call in this package retries on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
from fabric_protos.peer import transaction_pb2

_CHAINCODE_RESPONSE = re.compile(r"chaincode response (\d+), (?:\[([A-Za-z0-9_]+)\])?")
_DUPLICATE = "duplicate transaction found"
_ACCESS_DENIED = "access denied"
_STALE_TIMESTAMP = "request unauthorized due to incorrect timestamp"
_CONCURRENCY_LIMIT = "exceeding concurrency limit"

# CANCELLED: this client never cancels a unary call itself, so the server (or a proxy) dropped it mid-flight,
# e.g. a peer shutting down. Like UNAVAILABLE it says nothing about the transaction: endorse afresh, resend the
# same envelope, or ask the commit status again.
_ALWAYS_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                               grpc.StatusCode.CANCELLED})


@dataclass(frozen=True)
class ErrorDetail:
    """One node's reason for a failure (``gateway.ErrorDetail``)."""

    address: str
    msp_id: str
    message: str


class GatewayError(Exception):
    """Base of every error raised by ``fabric_client``."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        transaction_id: str | None = None,
        details: tuple[ErrorDetail, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.transaction_id = transaction_id
        self.details = tuple(details)
        texts = (message, *(d.message for d in self.details))
        match = next((m for m in map(_CHAINCODE_RESPONSE.search, texts) if m), None)
        #: Status the chaincode returned (e.g. 500) when the failure is a chaincode response.
        self.chaincode_status: int | None = int(match.group(1)) if match else None
        #: The bracketed business code (``USER_EXISTS``...) of a chaincode error, when present.
        self.chaincode_code: str | None = match.group(2) if match else None
        #: The tx id is already in the ledger: do not endorse again, ask CommitStatus for its outcome.
        self.duplicate_transaction: bool = any(_DUPLICATE in t for t in texts)
        #: The proposal's timestamp is outside the peer's window: resending it can never succeed.
        self.stale_proposal: bool = any(_STALE_TIMESTAMP in t for t in texts)
        self.access_denied: bool = any(_ACCESS_DENIED in t for t in texts)
        self.retryable: bool = self._retryable(texts)

    def _retryable(self, texts: tuple[str, ...]) -> bool:
        if self.chaincode_status is not None or self.access_denied or self.duplicate_transaction:
            return False
        if self.code in _ALWAYS_RETRYABLE:
            return True
        if self.code == grpc.StatusCode.ABORTED:
            return True  # every candidate failed for an infrastructure reason (chaincode errors returned above)
        if self.code == grpc.StatusCode.UNKNOWN:
            return any(_CONCURRENCY_LIMIT in t for t in texts)
        return False

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}" if self.code is not None else self.message
        peers = [f"{d.address} ({d.msp_id}): {d.message}" for d in self.details]
        return " | ".join([text, *peers])


class EvaluateError(GatewayError):
    """Evaluate failed; a chaincode error arrives as UNKNOWN with ``chaincode_code`` set."""


class EndorseError(GatewayError):
    """Endorse failed; chaincode errors, access denied and duplicate tx ids are final."""


class SubmitError(GatewayError):
    """Submit failed. ABORTED (orderer 4xx) is final for that envelope; UNAVAILABLE/DEADLINE/CANCELLED: resend it."""

    def _retryable(self, texts: tuple[str, ...]) -> bool:
        return self.code in _ALWAYS_RETRYABLE


class CommitStatusError(GatewayError):
    """CommitStatus failed; DEADLINE_EXCEEDED means "not committed yet (or never ordered)": ask again."""


class ChaincodeEventsError(GatewayError):
    """The chaincode event stream broke; reconnect from your checkpoint."""


class BlockEventsError(GatewayError):
    """The peer refused or ended a block stream (``protos.Deliver``): a gRPC failure, or a final status other
    than SUCCESS in ``deliver_status`` (``FORBIDDEN``, ``NOT_FOUND``, ``BAD_REQUEST``, ``SERVICE_UNAVAILABLE``).
    Reconnect from the block after the last one received."""

    def __init__(self, message: str, *, deliver_status: str | None = None, **kwargs: object) -> None:
        self.deliver_status = deliver_status
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

    def _retryable(self, texts: tuple[str, ...]) -> bool:
        if self.deliver_status is not None:
            return self.deliver_status == "SERVICE_UNAVAILABLE"
        return super()._retryable(texts)


class CommitError(GatewayError):
    """The transaction was committed with a validation code other than VALID (it wrote nothing).

    Retryable only as a *new* transaction and only for read conflicts (MVCC/phantom): the tx id is burned.
    """

    def __init__(self, transaction_id: str, validation_code: int, block_number: int | None = None) -> None:
        self.validation_code = validation_code
        self.validation_code_name = validation_code_name(validation_code)
        self.block_number = block_number
        super().__init__(
            f"transaction {transaction_id} failed to commit with status code {validation_code} "
            f"({self.validation_code_name})",
            transaction_id=transaction_id,
        )

    def _retryable(self, texts: tuple[str, ...]) -> bool:
        return self.validation_code in (
            transaction_pb2.MVCC_READ_CONFLICT,
            transaction_pb2.PHANTOM_READ_CONFLICT,
        )


def validation_code_name(code: int) -> str:
    """``TxValidationCode`` name of ``code`` (``"UNKNOWN_<n>"`` for codes this proto version lacks)."""
    try:
        return transaction_pb2.TxValidationCode.Name(code)
    except ValueError:
        return f"UNKNOWN_{code}"
