"""An endorsed transaction (submit it) and its commit (wait for its validation code)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2

from fabric_client import _builders
from fabric_client._rpc import ClientContext
from fabric_client.errors import GatewayError, validation_code_name


@dataclass(frozen=True)
class Status:
    """Outcome of a committed transaction (``CommitStatusResponse``)."""

    code: int
    code_name: str
    successful: bool
    transaction_id: str
    block_number: int


class Transaction:
    """A prepared transaction (``gateway.PreparedTransaction``): the endorsed envelope plus its tx id.

    :meth:`bytes` of a signed transaction is everything needed to submit it again later, e.g. after a
    crash, with no private key: rebuild it with ``Gateway.transaction_from_bytes``. An envelope has no
    time limit; resubmitting a committed one is harmless (the copy commits as DUPLICATE_TXID and the
    commit status keeps reporting the first copy).
    """

    def __init__(self, context: ClientContext, prepared: gateway_pb2.PreparedTransaction) -> None:
        self._context = context
        self._prepared = prepared
        payload = common_pb2.Payload.FromString(prepared.envelope.payload)
        channel_header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        self.channel: str = channel_header.channel_id
        if not prepared.transaction_id:
            prepared.transaction_id = channel_header.tx_id
        self._data = payload.data
        self._result: bytes | None = None

    @property
    def transaction_id(self) -> str:
        return self._prepared.transaction_id

    @property
    def result(self) -> bytes:
        """The chaincode's return value, taken from the endorsed response inside the envelope."""
        if self._result is None:
            self._result = _result_from_transaction(self._data)
        return self._result

    def bytes(self) -> bytes:
        """Serialized ``gateway.PreparedTransaction`` (with the envelope signature, once signed)."""
        return self._prepared.SerializeToString()

    def digest(self) -> bytes:
        """SHA-256 of the envelope payload: what the signature covers."""
        return hashlib.sha256(self._prepared.envelope.payload).digest()

    @property
    def signed(self) -> bool:
        return bool(self._prepared.envelope.signature)

    def sign(self) -> None:
        """Sign the envelope with the gateway's signer (a signed transaction is never signed again)."""
        if not self.signed:
            self._prepared.envelope.signature = self._context.sign(self.digest())

    def submit(self, *, timeout: float | None = None) -> Commit:
        """Send the envelope to ordering; return as soon as ordering accepted it (not committed yet)."""
        if not self.signed:
            self.sign()
        request = gateway_pb2.SubmitRequest(
            transaction_id=self.transaction_id,
            channel_id=self.channel,
            prepared_transaction=self._prepared.envelope,
        )
        self._context.stub.submit(request, timeout if timeout is not None else self._context.timeouts.submit)
        return new_commit(self._context, self.transaction_id, self.channel)


class Commit:
    """The pending outcome of one transaction id (``gateway.SignedCommitStatusRequest``).

    The request has no nonce or timestamp, so its bytes can be stored and replayed forever. A new one is signed
    on its first :meth:`status` (or offline: :meth:`digest`, then ``Gateway.commit_from_bytes``).
    """

    def __init__(self, context: ClientContext, signed: gateway_pb2.SignedCommitStatusRequest) -> None:
        self._context = context
        self._signed = signed
        request = gateway_pb2.CommitStatusRequest.FromString(signed.request)
        self.transaction_id: str = request.transaction_id
        self.channel: str = request.channel_id

    def bytes(self) -> bytes:
        return self._signed.SerializeToString()

    def digest(self) -> bytes:
        return hashlib.sha256(self._signed.request).digest()

    def status(self, *, timeout: float | None = None) -> Status:
        """Wait until the transaction is committed (the peer blocks; it never answers "not found").

        Raises :class:`CommitStatusError` with DEADLINE_EXCEEDED (retryable) when not committed in time.
        """
        if not self._signed.signature:
            self._signed.signature = self._context.sign(self.digest())
        response = self._context.stub.commit_status(
            self._signed.SerializeToString(),
            self.transaction_id,
            timeout if timeout is not None else self._context.timeouts.commit_status,
        )
        return Status(
            code=response.result,
            code_name=validation_code_name(response.result),
            successful=response.result == transaction_pb2.VALID,
            transaction_id=self.transaction_id,
            block_number=response.block_number,
        )


def new_commit(context: ClientContext, transaction_id: str, channel: str) -> Commit:
    """A commit-status request for ``transaction_id``, signed on its first :meth:`Commit.status` (as the Go
    SDK does: a caller who learns the outcome otherwise, e.g. from filtered blocks, signs nothing)."""
    request = _builders.build_commit_status_request(
        transaction_id=transaction_id, channel=channel, creator=context.identity.creator
    )
    return Commit(context, gateway_pb2.SignedCommitStatusRequest(request=request))


def _result_from_transaction(data: bytes) -> bytes:
    transaction = transaction_pb2.Transaction.FromString(data)
    if not transaction.actions:
        raise GatewayError("prepared transaction has no actions")
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
    response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
        action_payload.action.proposal_response_payload
    )
    return proposal_pb2.ChaincodeAction.FromString(response_payload.extension).response.payload
