"""The one place where gRPC calls are made and ``grpc.RpcError`` becomes a typed :mod:`errors` exception.

Per-node causes travel as ``google.rpc.Status`` details in the ``grpc-status-details-bin`` trailer; each is an
``Any`` wrapping ``gateway.ErrorDetail``. Empty details mean the gateway peer itself refused the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import grpc
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import events_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from fabric_client.errors import (
    CommitStatusError,
    EndorseError,
    ErrorDetail,
    EvaluateError,
    GatewayError,
    SubmitError,
)
from fabric_client.identity import X509Identity
from fabric_client.signing import Signer

if TYPE_CHECKING:
    from fabric_client.gateway import Timeouts

_DETAILS_KEY = "grpc-status-details-bin"
_SERVICE = "/gateway.Gateway/"
_DELIVER_FILTERED = "/protos.Deliver/DeliverFiltered"  # the peer's own service, beside the gateway

E = TypeVar("E", bound=GatewayError)


def error_details(error: grpc.Call) -> tuple[ErrorDetail, ...]:
    """Decode the ``gateway.ErrorDetail`` entries of a failed call's status (empty if none)."""
    metadata = error.trailing_metadata() or ()
    raw = next((value for key, value in metadata if key == _DETAILS_KEY), None)
    if not raw:
        return ()
    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except DecodeError:
        return ()
    details = []
    for any_detail in status.details:
        detail = gateway_pb2.ErrorDetail()
        if any_detail.Unpack(detail):
            details.append(ErrorDetail(detail.address, detail.msp_id, detail.message))
    return tuple(details)


def to_gateway_error(error: grpc.RpcError, error_type: type[E], transaction_id: str | None) -> E:
    """Convert a failed gRPC call into ``error_type`` carrying code, message and details."""
    if not isinstance(error, grpc.Call):  # pragma: no cover - grpcio always raises Call errors for RPCs
        return error_type(str(error), transaction_id=transaction_id)
    return error_type(
        error.details() or "",
        code=error.code(),
        transaction_id=transaction_id,
        details=error_details(error),
    )


class GatewayStub:
    """Typed unary and streaming calls on ``gateway.Gateway`` (and the peer's ``protos.Deliver``) over one
    channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        def unary(name: str, response: type[Message]) -> grpc.UnaryUnaryMultiCallable:
            return channel.unary_unary(
                _SERVICE + name,
                request_serializer=_serialize,
                response_deserializer=response.FromString,
            )

        self._evaluate = unary("Evaluate", gateway_pb2.EvaluateResponse)
        self._endorse = unary("Endorse", gateway_pb2.EndorseResponse)
        self._submit = unary("Submit", gateway_pb2.SubmitResponse)
        self._commit_status = unary("CommitStatus", gateway_pb2.CommitStatusResponse)
        self._chaincode_events = channel.unary_stream(
            _SERVICE + "ChaincodeEvents",
            request_serializer=_serialize,
            response_deserializer=gateway_pb2.ChaincodeEventsResponse.FromString,
        )
        self._deliver_filtered = channel.stream_stream(
            _DELIVER_FILTERED,
            request_serializer=_serialize,
            response_deserializer=events_pb2.DeliverResponse.FromString,
        )

    @staticmethod
    def _call(
        method: grpc.UnaryUnaryMultiCallable,
        request: Message | bytes,
        timeout: float | None,
        error_type: type[GatewayError],
        transaction_id: str | None,
    ) -> Message:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as error:
            raise to_gateway_error(error, error_type, transaction_id) from None

    def evaluate(self, request: gateway_pb2.EvaluateRequest, timeout: float | None) -> gateway_pb2.EvaluateResponse:
        return self._call(self._evaluate, request, timeout, EvaluateError, request.transaction_id)

    def endorse(self, request: gateway_pb2.EndorseRequest, timeout: float | None) -> gateway_pb2.EndorseResponse:
        return self._call(self._endorse, request, timeout, EndorseError, request.transaction_id)

    def submit(self, request: gateway_pb2.SubmitRequest, timeout: float | None) -> gateway_pb2.SubmitResponse:
        return self._call(self._submit, request, timeout, SubmitError, request.transaction_id)

    def commit_status(
        self, request: bytes, transaction_id: str, timeout: float | None
    ) -> gateway_pb2.CommitStatusResponse:
        """``request`` is a serialized ``SignedCommitStatusRequest`` (kept as bytes so it can be stored)."""
        return self._call(self._commit_status, request, timeout, CommitStatusError, transaction_id)

    def chaincode_events(self, request: bytes, timeout: float | None) -> grpc.Call:
        """Open the event stream; iterate it through :func:`iterate_stream`."""
        return self._chaincode_events(request, timeout=timeout)

    def deliver_filtered(self, envelope: bytes, timeout: float | None) -> grpc.Call:
        """Open a filtered-block stream with one signed seek ``envelope`` (the request side then closes; the peer
        serves it to its stop block). Iterate it through :func:`iterate_stream`."""
        return self._deliver_filtered(iter((envelope,)), timeout=timeout)


def iterate_stream(call: grpc.Call, error_type: type[E]) -> Iterator[Message]:
    """Yield a server stream's messages; a local cancel ends it quietly, any other failure raises ``error_type``."""
    try:
        yield from call
    except grpc.RpcError as error:
        if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.CANCELLED and call.cancelled():
            return
        raise to_gateway_error(error, error_type, None) from None


def _serialize(message: Message | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


@dataclass(frozen=True)
class ClientContext:
    """What every request object needs: the stub, who signs, and the default deadlines."""

    stub: GatewayStub
    identity: X509Identity
    signer: Signer | None
    timeouts: Timeouts
    #: SHA-256 of the client's TLS certificate (DER) under mutual TLS; Deliver requests carry it.
    tls_cert_hash: bytes = b""

    def sign(self, digest: bytes) -> bytes:
        if self.signer is None:
            raise GatewayError(
                "no signer configured: sign digest() offline and rebuild the object with the signature"
            )
        return self.signer(digest)
