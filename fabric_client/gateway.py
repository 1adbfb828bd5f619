"""Gateway → Network → Contract: the entry points of the client, shaped like the official SDKs.

    gateway = connect("127.0.0.1:7051", X509Identity.from_pem_file("Org1MSP", cert), EcdsaSigner.from_pem_file(key))
    contract = gateway.network("gxchannel").contract("gxcc", "TokenomicsContract")
    balance = contract.evaluate("GetBalance", user_id)
    result = contract.submit("TransferWithFees", a, b, "2500000", "", "rent", key)

The application owns nothing but the :class:`Gateway`; close it (or use it as a context manager) to close the
gRPC channel. All objects are safe to share between threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2

from fabric_client import _builders
from fabric_client._builders import Arg
from fabric_client._rpc import ClientContext, GatewayStub
from fabric_client.blocks import BlockStream, open_block_stream
from fabric_client.checkpoint import Checkpoint
from fabric_client.errors import CommitError
from fabric_client.events import ChaincodeEvent, ChaincodeEventBlock, EventStream, event_blocks, events
from fabric_client.identity import X509Identity
from fabric_client.proposal import Proposal
from fabric_client.signing import Signer
from fabric_client.transaction import Commit, Status, Transaction, new_commit

MIB = 1024 * 1024
PemSource = bytes | str | os.PathLike[str]


@dataclass(frozen=True)
class Timeouts:
    """Default per-call deadlines in seconds (the official sample's values); each call may override."""

    evaluate: float = 5.0
    endorse: float = 15.0
    submit: float = 5.0
    commit_status: float = 60.0


@dataclass(frozen=True)
class ChainInfo:
    """``common.BlockchainInfo`` from qscc: the newest block is ``height - 1``."""

    height: int
    current_block_hash: bytes
    previous_block_hash: bytes


def channel_options(tls_server_name: str | None = None) -> list[tuple[str, int | str]]:
    """gRPC options for a peer: keepalive above the peer's 60 s minimum, a 100 MiB message limit."""
    options: list[tuple[str, int | str]] = [
        ("grpc.keepalive_time_ms", 120_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.max_receive_message_length", 100 * MIB),
        ("grpc.max_send_message_length", 100 * MIB),
    ]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return options


def _pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def connect(
    endpoint: str,
    identity: X509Identity,
    signer: Signer | None,
    *,
    tls_root_cert: PemSource | None = None,
    tls_server_name: str | None = None,
    client_cert: PemSource | None = None,
    client_key: PemSource | None = None,
    timeouts: Timeouts | None = None,
) -> Gateway:
    """Open a connection to a peer's Gateway service.

    ``endpoint`` is ``host:port``. Without ``tls_root_cert`` the channel is plaintext (devnet); with it, TLS
    verifies the peer against that root, optionally under ``tls_server_name``, and ``client_cert`` plus
    ``client_key`` enable mutual TLS. ``signer`` may be ``None`` for offline signing: every object then
    exposes ``digest()`` and is rebuilt with the signature through the ``*_from_bytes`` methods.
    """
    options = channel_options(tls_server_name)
    if tls_root_cert is None:
        if client_cert is not None or client_key is not None or tls_server_name is not None:
            raise ValueError("client certificates and tls_server_name need tls_root_cert")
        channel = grpc.insecure_channel(endpoint, options=options)
    else:
        if (client_cert is None) != (client_key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        chain = _pem(client_cert)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_pem(tls_root_cert),
            private_key=_pem(client_key),
            certificate_chain=chain,
        )
        channel = grpc.secure_channel(endpoint, credentials, options=options)
        if chain is not None:
            return Gateway(channel, identity, signer, timeouts or Timeouts(), tls_cert_hash=tls_cert_hash(chain))
    return Gateway(channel, identity, signer, timeouts or Timeouts())


def tls_cert_hash(chain_pem: bytes) -> bytes:
    """SHA-256 of the DER of the first certificate in ``chain_pem``: how a peer under mutual TLS binds a
    Deliver request to the TLS session that carries it."""
    return _builders.sha256(x509.load_pem_x509_certificate(chain_pem).public_bytes(Encoding.DER))


class Gateway:
    """A connection to one peer's Gateway service on behalf of one client identity."""

    def __init__(
        self, channel: grpc.Channel, identity: X509Identity, signer: Signer | None, timeouts: Timeouts, *,
        tls_cert_hash: bytes = b"",
    ) -> None:
        self._channel = channel
        self._context = ClientContext(GatewayStub(channel), identity, signer, timeouts, tls_cert_hash)

    @property
    def identity(self) -> X509Identity:
        return self._context.identity

    @property
    def timeouts(self) -> Timeouts:
        return self._context.timeouts

    def network(self, channel: str) -> Network:
        return Network(self._context, channel)

    def proposal_from_bytes(self, data: bytes, signature: bytes | None = None) -> Proposal:
        """Rebuild a proposal from :meth:`Proposal.bytes`, adding an offline ``signature`` if given."""
        proposed = gateway_pb2.ProposedTransaction.FromString(data)
        if signature is not None:
            proposed.proposal.signature = signature
        return Proposal.from_proposed_transaction(self._context, proposed)

    def transaction_from_bytes(self, data: bytes, signature: bytes | None = None) -> Transaction:
        """Rebuild a transaction from :meth:`Transaction.bytes` (e.g. an outbox row) to submit it again.

        A stored signed transaction needs no private key; pass ``signature`` to attach an offline one.
        """
        prepared = gateway_pb2.PreparedTransaction.FromString(data)
        if signature is not None:
            prepared.envelope.signature = signature
        return Transaction(self._context, prepared)

    def commit_from_bytes(self, data: bytes, signature: bytes | None = None) -> Commit:
        """Rebuild a commit-status request from :meth:`Commit.bytes`."""
        signed = gateway_pb2.SignedCommitStatusRequest.FromString(data)
        if signature is not None:
            signed.signature = signature
        return Commit(self._context, signed)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Network:
    """One channel seen through the gateway."""

    def __init__(self, context: ClientContext, name: str) -> None:
        self._context = context
        self.name = name

    def contract(self, chaincode: str, contract_name: str | None = None) -> Contract:
        return Contract(self._context, self.name, chaincode, contract_name)

    def new_commit(self, transaction_id: str) -> Commit:
        """A commit-status request for any transaction id (the requester need not be the submitter)."""
        return new_commit(self._context, transaction_id, self.name)

    def commit_status(self, transaction_id: str, *, timeout: float | None = None) -> Status:
        """Wait for ``transaction_id`` to commit; DEADLINE_EXCEEDED (retryable) when it did not in time."""
        return self.new_commit(transaction_id).status(timeout=timeout)

    def chaincode_event_blocks(
        self,
        chaincode: str,
        *,
        start_block: int | None = None,
        checkpoint: Checkpoint | None = None,
        timeout: float | None = None,
    ) -> EventStream[ChaincodeEventBlock]:
        """Stream the chaincode's events one block at a time.

        Start: a checkpoint with state wins (its block, skipping up to its transaction), else
        ``start_block``, else the next block to be committed (no history). ``timeout`` bounds the whole
        stream (None: until closed).
        """
        return EventStream(self._open_events(chaincode, start_block, checkpoint, timeout), event_blocks)

    def chaincode_events(
        self,
        chaincode: str,
        *,
        start_block: int | None = None,
        checkpoint: Checkpoint | None = None,
        timeout: float | None = None,
    ) -> EventStream[ChaincodeEvent]:
        """Like :meth:`chaincode_event_blocks`, one event at a time."""
        return EventStream(self._open_events(chaincode, start_block, checkpoint, timeout), events)

    def _open_events(
        self, chaincode: str, start_block: int | None, checkpoint: Checkpoint | None, timeout: float | None
    ) -> grpc.Call:
        after_transaction_id = None
        if checkpoint is not None and checkpoint.block_number is not None:
            start_block = checkpoint.block_number
            after_transaction_id = checkpoint.transaction_id
        request = _builders.build_chaincode_events_request(
            channel=self.name,
            chaincode=chaincode,
            creator=self._context.identity.creator,
            start_block=start_block,
            after_transaction_id=after_transaction_id,
        )
        signed = gateway_pb2.SignedChaincodeEventsRequest(
            request=request, signature=self._context.sign(_builders.sha256(request))
        )
        return self._context.stub.chaincode_events(signed.SerializeToString(), timeout)

    def filtered_blocks(self, *, start_block: int | None = None, newest: bool = False,
                        timeout: float | None = None) -> BlockStream:
        """Stream the channel's blocks, filtered (each transaction's id and validation code), from the peer's
        Deliver service.

        Start: ``start_block``; or, with ``newest``, the newest block now (it arrives at once, so its arrival
        proves the stream is in place); else the next block to be committed. The stream follows the chain
        until closed; ``timeout`` bounds it as a whole. Needs the channel's Readers policy, as CommitStatus.
        """
        if newest and start_block is not None:
            raise ValueError("give start_block or newest, not both")
        payload = _builders.build_seek_payload(
            channel=self.name,
            creator=self._context.identity.creator,
            start=_builders.NEWEST if newest else start_block,
            timestamp_ns=time.time_ns(),
            tls_cert_hash=self._context.tls_cert_hash,
        )
        envelope = common_pb2.Envelope(payload=payload, signature=self._context.sign(_builders.sha256(payload)))
        return open_block_stream(self._context.stub.deliver_filtered(envelope.SerializeToString(), timeout))

    def chain_info(self, *, timeout: float | None = None) -> ChainInfo:
        """Ledger height and newest block hashes (qscc ``GetChainInfo`` through Evaluate)."""
        payload = self.contract("qscc").evaluate("GetChainInfo", self.name, timeout=timeout)
        info = ledger_pb2.BlockchainInfo.FromString(payload)
        return ChainInfo(info.height, info.currentBlockHash, info.previousBlockHash)


class Contract:
    """A chaincode (and optionally one named contract inside it) on a channel."""

    def __init__(self, context: ClientContext, channel: str, chaincode: str, contract_name: str | None) -> None:
        self._context = context
        self.channel = channel
        self.chaincode = chaincode
        self.contract_name = contract_name

    def _transaction_name(self, function: str) -> str:
        return f"{self.contract_name}:{function}" if self.contract_name else function

    def new_proposal(
        self,
        function: str,
        args: Sequence[Arg] = (),
        *,
        transient: Mapping[str, bytes] | None = None,
        endorsing_organizations: Sequence[str] = (),
    ) -> Proposal:
        """Build (and, with a signer, sign) a proposal with a fresh nonce, tx id and timestamp."""
        creator = self._context.identity.creator
        tx_id, proposal_bytes = _builders.build_proposal(
            channel=self.channel,
            chaincode=self.chaincode,
            transaction_name=self._transaction_name(function),
            args=args,
            creator=creator,
            nonce=_builders.new_nonce(),
            timestamp_ns=time.time_ns(),
            transient=transient,
        )
        signer = self._context.signer
        return Proposal(
            self._context,
            transaction_id=tx_id,
            proposal_bytes=proposal_bytes,
            channel=self.channel,
            signature=signer(_builders.sha256(proposal_bytes)) if signer is not None else b"",
            endorsing_organizations=endorsing_organizations,
        )

    def evaluate(
        self, function: str, *args: Arg, transient: Mapping[str, bytes] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Query: run ``function`` on one peer, order nothing, return its result."""
        return self.new_proposal(function, args, transient=transient).evaluate(timeout=timeout)

    def submit(self, function: str, *args: Arg, transient: Mapping[str, bytes] | None = None) -> bytes:
        """Endorse, submit and wait for commit; return the result or raise :class:`CommitError`."""
        transaction = self.new_proposal(function, args, transient=transient).endorse()
        status = transaction.submit().status()
        if not status.successful:
            raise CommitError(status.transaction_id, status.code, status.block_number)
        return transaction.result
