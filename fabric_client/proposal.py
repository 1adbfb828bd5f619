"""A signed transaction proposal: evaluate it (query) or endorse it (first step of a submit)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import proposal_pb2

from fabric_client._rpc import ClientContext
from fabric_client.transaction import Transaction


class Proposal:
    """A proposal (``gateway.ProposedTransaction``) bound to a gateway connection.

    Built by ``Contract.new_proposal`` and signed at once when the gateway has a signer; otherwise sign
    :meth:`digest` offline and rebuild it with ``Gateway.proposal_from_bytes(bytes, signature)``.
    A proposal is accepted by peers for about 15 minutes after it was built (their timestamp window):
    store endorsed transactions, never proposals.
    """

    def __init__(
        self,
        context: ClientContext,
        *,
        transaction_id: str,
        proposal_bytes: bytes,
        channel: str,
        signature: bytes = b"",
        endorsing_organizations: Sequence[str] = (),
    ) -> None:
        self._context = context
        self.transaction_id = transaction_id
        self.channel = channel
        self.endorsing_organizations = tuple(endorsing_organizations)
        self._proposal_bytes = proposal_bytes
        self._signature = signature

    @classmethod
    def from_proposed_transaction(
        cls, context: ClientContext, proposed: gateway_pb2.ProposedTransaction
    ) -> Proposal:
        """Rebuild from ``ProposedTransaction`` (the channel is read from the signed header)."""
        header = common_pb2.Header.FromString(
            proposal_pb2.Proposal.FromString(proposed.proposal.proposal_bytes).header
        )
        return cls(
            context,
            transaction_id=proposed.transaction_id,
            proposal_bytes=proposed.proposal.proposal_bytes,
            channel=common_pb2.ChannelHeader.FromString(header.channel_header).channel_id,
            signature=proposed.proposal.signature,
            endorsing_organizations=proposed.endorsing_organizations,
        )

    def bytes(self) -> bytes:
        """Serialized ``gateway.ProposedTransaction`` (with its signature, once signed)."""
        return gateway_pb2.ProposedTransaction(
            transaction_id=self.transaction_id,
            proposal=proposal_pb2.SignedProposal(proposal_bytes=self._proposal_bytes, signature=self._signature),
            endorsing_organizations=self.endorsing_organizations,
        ).SerializeToString()

    def digest(self) -> bytes:
        """SHA-256 of the proposal bytes: what the signature covers."""
        return hashlib.sha256(self._proposal_bytes).digest()

    @property
    def signed(self) -> bool:
        return bool(self._signature)

    def sign(self) -> None:
        """Sign with the gateway's signer (a signed proposal is never signed again)."""
        if not self._signature:
            self._signature = self._context.sign(self.digest())

    def _signed_proposal(self) -> proposal_pb2.SignedProposal:
        self.sign()
        return proposal_pb2.SignedProposal(proposal_bytes=self._proposal_bytes, signature=self._signature)

    def evaluate(self, *, timeout: float | None = None) -> bytes:
        """Run the transaction on one peer without ordering it; return the chaincode's result bytes."""
        request = gateway_pb2.EvaluateRequest(
            transaction_id=self.transaction_id,
            channel_id=self.channel,
            proposed_transaction=self._signed_proposal(),
            target_organizations=self.endorsing_organizations,
        )
        response = self._context.stub.evaluate(
            request, timeout if timeout is not None else self._context.timeouts.evaluate
        )
        return response.result.payload

    def endorse(self, *, timeout: float | None = None) -> Transaction:
        """Collect endorsements; return the prepared transaction, signed when the gateway has a signer."""
        request = gateway_pb2.EndorseRequest(
            transaction_id=self.transaction_id,
            channel_id=self.channel,
            proposed_transaction=self._signed_proposal(),
            endorsing_organizations=self.endorsing_organizations,
        )
        response = self._context.stub.endorse(
            request, timeout if timeout is not None else self._context.timeouts.endorse
        )
        prepared = gateway_pb2.PreparedTransaction(
            transaction_id=self.transaction_id, envelope=response.prepared_transaction
        )
        transaction = Transaction(self._context, prepared)
        if self._context.signer is not None:
            transaction.sign()
        return transaction
