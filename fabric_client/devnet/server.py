"""Devnet: a Fabric Gateway server that fails where a real peer fails (docs/FABRIC_GATEWAY.md §6 and §7).

One process plays the gateway peer, its endorser, a single orderer and the committer of one channel:

- **Endorser** (Evaluate/Endorse): the v3 ±15 min proposal time window (UNAVAILABLE), header checks, tx id
  recomputation, MSP membership (certificate chains to the CA devnet generated), ECDSA-SHA256 signatures with
  low S enforced, refusal of tx ids already in the ledger, then the GX contract (:mod:`.chaincode`) simulated on
  committed state with read versions. Endorse returns the envelope exactly as a peer assembles it, with one
  endorsement signed by the devnet peer key; transient data never enters it.
- **Orderer** (Submit): requires and verifies the envelope signature (FORBIDDEN otherwise), accepts duplicates,
  cuts a block when ``block_size`` transactions are pending or ``block_timeout`` after the first one arrived.
- **Committer**: block 0 is a genesis block, so application blocks start at 1; per block it marks
  DUPLICATE_TXID (already in the ledger or earlier in the block), BAD_PROPOSAL_TXID, BAD_PAYLOAD, BAD_RWSET
  (parsed before the endorsements are checked, as the peer's validation dispatcher does),
  ENDORSEMENT_POLICY_FAILURE and MVCC_READ_CONFLICT (against committed state plus earlier VALID transactions of
  the block), applies only VALID writes and stores only VALID transactions' events.
- **CommitStatus** blocks until the tx id commits or the client's deadline passes (never "not found") and reports
  the first occurrence; **ChaincodeEvents** implements the start rules (Oldest/Newest → INVALID_ARGUMENT,
  NextCommit = height, ``after_transaction_id`` skip) and sends one message per block with matching events.
- **DeliverFiltered** (the peer's ``protos.Deliver``, beside the gateway): signed seek requests, the start and stop
  rules and final statuses of Fabric's deliver handler, one filtered block (tx ids and validation codes) per block.
- qscc ``GetChainInfo`` through Evaluate. Errors carry real ``google.rpc.Status`` details (``gateway.ErrorDetail``).

The ledger is a SQLite file under the data directory (:mod:`.ledger`): a restart on the same directory keeps the
chain. Transactions accepted by Submit but not yet in a block are cut into a final block on a clean stop; a
``kill -9`` loses them, as an orderer crash before consensus would.

Not modelled: full blocks (``Deliver``, ``DeliverWithPrivateData``), range queries, private data, several organisations.
Speed: endorsements this process signed are not verified again at commit (any other is); :meth:`DevnetServer.seed`
builds large chains without gRPC.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import grpc
from cryptography import x509
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import (
    chaincode_event_pb2,
    chaincode_pb2,
    events_pb2,
    events_pb2_grpc,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from grpc_status import rpc_status

from fabric_client._builders import transaction_id as compute_tx_id
from fabric_client.devnet import chaincode, pki
from fabric_client.devnet.ledger import Ledger, TxRecord
from fabric_client.devnet.msp import AccessDenied, Membership
from fabric_client.devnet.shim import Response, Stub, Version
from fabric_client.gateway import tls_cert_hash
from fabric_client.signing import EcdsaSigner

if TYPE_CHECKING:
    from fabric_client.gateway import Gateway, Timeouts

log = logging.getLogger(__name__)

CHANNEL = "gxchannel"
CHAINCODE = "gxcc"
MSP_ID = "Org1MSP"
CHAINCODE_VERSION = "1.0"
TIME_WINDOW = datetime.timedelta(minutes=15)
MIB = 1024 * 1024

_ENDORSE_FAILED = "failed to endorse transaction, see attached details for more info"
_EVALUATE_FAILED = "failed to evaluate transaction, see attached details for more info"
_WRITERS_FORBIDDEN = (
    "received unsuccessful response from orderer: status=FORBIDDEN, info=implicit policy evaluation failed - "
    "0 sub-policies were satisfied, but this policy requires 1 of the 'Writers' sub-policies to be satisfied: "
    "permission denied"
)
_READERS_DENIED = (
    "failed evaluating policy on signed data during check policy on channel [{channel}] with policy "
    "[/Channel/Application/Readers]: [implicit policy evaluation failed - 0 sub-policies were satisfied, but "
    "this policy requires 1 of the 'Readers' sub-policies to be satisfied]"
)


class EndorsementRefused(Exception):
    """:meth:`GatewayService.endorse` refused a proposal (the message is what a peer's error detail says)."""


class _EndorserFailure(Exception):
    """The local endorser refused a proposal. ``filtered``: an auth filter refused it (no response)."""

    def __init__(self, message: str, *, filtered: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.filtered = filtered


def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    details: Sequence[gateway_pb2.ErrorDetail] = (),
) -> NoReturn:
    """End the RPC with a ``google.rpc.Status`` carrying ``gateway.ErrorDetail`` entries, as the peer does."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status returned")  # pragma: no cover - grpc raises


@dataclass(frozen=True)
class _Unpacked:
    """A proposal taken apart the way the endorser's UnpackProposal does."""

    signed: proposal_pb2.SignedProposal
    header: common_pb2.Header
    channel_header: common_pb2.ChannelHeader
    signature_header: common_pb2.SignatureHeader
    chaincode: str
    args: list[bytes]
    transient: dict[str, bytes]
    input: bytes  # ChaincodeProposalPayload.input: what enters the transaction and the proposal hash


def _unpack(signed: proposal_pb2.SignedProposal) -> _Unpacked:
    proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
    signature_header = common_pb2.SignatureHeader.FromString(header.signature_header)
    extension = proposal_pb2.ChaincodeHeaderExtension.FromString(channel_header.extension)
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    invocation = chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input)
    if not invocation.chaincode_spec.HasField("input"):
        raise ValueError("chaincode input is missing")
    name = extension.chaincode_id.name
    if not name or name != invocation.chaincode_spec.chaincode_id.name:
        raise ValueError("chaincode name is missing or differs between header and payload")
    return _Unpacked(
        signed, header, channel_header, signature_header, name,
        list(invocation.chaincode_spec.input.args), dict(payload.TransientMap), payload.input,
    )


class OwnEndorsements:
    """Digests and signatures of the endorsements this process signed, so commit need not verify them again.

    Anything else (a tampered response payload changes the digest, an endorsement from before a restart) is
    verified in full. Bounded: the oldest entries are forgotten first.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self._signatures: dict[bytes, bytes] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def record(self, digest: bytes, signature: bytes) -> None:
        with self._lock:
            if len(self._signatures) >= self._limit:
                del self._signatures[next(iter(self._signatures))]
            self._signatures[digest] = signature

    def signed(self, digest: bytes, signature: bytes) -> bool:
        return self._signatures.get(digest) == signature


class Orderer:
    """Collects submitted envelopes and cuts them into blocks by count or by timeout."""

    def __init__(self, deliver: Callable[[list[bytes]], None], block_size: int, block_timeout: float) -> None:
        if block_size < 1 or block_timeout <= 0:
            raise ValueError("block_size must be >= 1 and block_timeout > 0")
        self._deliver = deliver
        self._block_size = block_size
        self._block_timeout = block_timeout
        self._pending: list[bytes] = []
        self._first_arrival = 0.0
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="devnet-orderer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def broadcast(self, envelope: bytes) -> bool:
        """Accept an envelope for ordering; False once stopping (the caller answers UNAVAILABLE)."""
        with self._condition:
            if self._stopping:
                return False
            if not self._pending:
                self._first_arrival = time.monotonic()
            self._pending.append(envelope)
            if len(self._pending) == 1 or len(self._pending) >= self._block_size:
                self._condition.notify()
            return True

    def stop(self) -> None:
        """Cut whatever is pending into final blocks, then end the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _next_batch(self) -> list[bytes] | None:
        with self._condition:
            while not self._pending:
                if self._stopping:
                    return None
                self._condition.wait()
            while len(self._pending) < self._block_size and not self._stopping:
                remaining = self._first_arrival + self._block_timeout - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch = self._pending[: self._block_size]
            del self._pending[: self._block_size]
            self._first_arrival = time.monotonic()
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._deliver(batch)
            except Exception:  # a committer bug must not kill ordering silently
                log.exception("devnet: committing a block failed")


class Committer:
    """Validates and commits blocks; wakes up whoever waits for the ledger to grow."""

    def __init__(self, ledger: Ledger, membership: Membership, own_endorsements: OwnEndorsements) -> None:
        self.ledger = ledger
        self._membership = membership
        self._own_endorsements = own_endorsements
        self._commit_lock = threading.Lock()
        self._condition = threading.Condition()
        self.stopping = False

    def commit(self, envelopes: list[bytes]) -> None:
        """Validate and append one block (the orderer thread and :meth:`DevnetServer.seed` both call this)."""
        with self._commit_lock:
            records = self._validate(envelopes)
            self.ledger.append(envelopes, records)
        with self._condition:
            self._condition.notify_all()

    def wait_for_height_above(self, block: int, timeout: float) -> bool:
        """Wait until block ``block`` exists (True) or ``timeout`` passes / devnet stops (False)."""
        with self._condition:
            return self._condition.wait_for(
                lambda: self.ledger.height > block or self.stopping, timeout
            ) and self.ledger.height > block

    def stop(self) -> None:
        with self._condition:
            self.stopping = True
            self._condition.notify_all()

    def _validate(self, envelopes: list[bytes]) -> list[TxRecord]:
        parsed = [self._parse(envelope) for envelope in envelopes]
        in_ledger = self.ledger.committed_tx_ids([p[0] for p in parsed if p is not None])
        seen: set[str] = set()
        written: dict[tuple[str, str], Version] = {}  # versions set by earlier VALID txs of this block
        block = self.ledger.height
        records = []
        for txnum, item in enumerate(parsed):
            if item is None:
                records.append(TxRecord("", transaction_pb2.BAD_PAYLOAD))
                continue
            tx_id, payload = item
            if tx_id in in_ledger or tx_id in seen:
                records.append(TxRecord(tx_id, transaction_pb2.DUPLICATE_TXID))
                continue
            seen.add(tx_id)
            record = self._validate_transaction(tx_id, payload, written)
            if record.code == transaction_pb2.VALID:
                for key in record.writes:
                    written[key] = (block, txnum)
            records.append(record)
        return records

    @staticmethod
    def _parse(envelope: bytes) -> tuple[str, common_pb2.Payload] | None:
        try:
            payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(envelope).payload)
            return common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id, payload
        except DecodeError:
            return None

    def _validate_transaction(
        self, tx_id: str, payload: common_pb2.Payload, written: dict[tuple[str, str], Version]
    ) -> TxRecord:
        try:
            signature_header = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
            if compute_tx_id(signature_header.nonce, signature_header.creator) != tx_id:
                return TxRecord(tx_id, transaction_pb2.BAD_PROPOSAL_TXID)
            transaction = transaction_pb2.Transaction.FromString(payload.data)
            if len(transaction.actions) != 1:
                return TxRecord(tx_id, transaction_pb2.BAD_PAYLOAD)
            action_payload = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
            prp = action_payload.action.proposal_response_payload
            action = proposal_pb2.ChaincodeAction.FromString(
                proposal_response_pb2.ProposalResponsePayload.FromString(prp).extension
            )
        except DecodeError:
            return TxRecord(tx_id, transaction_pb2.BAD_PAYLOAD)
        # As the peer's validation dispatcher (core/committer/txvalidator/v20/plugindispatcher): the read-write
        # set is parsed before the endorsement policy is checked, and one that does not parse is BAD_RWSET.
        try:
            tx_rwset = rwset_pb2.TxReadWriteSet.FromString(action.results)
            kv_sets = [(ns.namespace, kv_rwset_pb2.KVRWSet.FromString(ns.rwset)) for ns in tx_rwset.ns_rwset]
        except DecodeError:
            return TxRecord(tx_id, transaction_pb2.BAD_RWSET)
        try:
            if not action_payload.action.endorsements:
                return TxRecord(tx_id, transaction_pb2.ENDORSEMENT_POLICY_FAILURE)
            for endorsement in action_payload.action.endorsements:
                signed = prp + endorsement.endorser
                if not self._own_endorsements.signed(hashlib.sha256(signed).digest(), endorsement.signature):
                    self._membership.verify(endorsement.endorser, signed, endorsement.signature)
        except AccessDenied:
            return TxRecord(tx_id, transaction_pb2.ENDORSEMENT_POLICY_FAILURE)
        except DecodeError:
            return TxRecord(tx_id, transaction_pb2.BAD_PAYLOAD)
        writes: dict[tuple[str, str], bytes | None] = {}
        for namespace, kv in kv_sets:
            for read in kv.reads:
                expected = (read.version.block_num, read.version.tx_num) if read.HasField("version") else None
                key = (namespace, read.key)
                current = written[key] if key in written else self.ledger.committed_version(*key)
                if current != expected:
                    return TxRecord(tx_id, transaction_pb2.MVCC_READ_CONFLICT)
            for write in kv.writes:
                writes[(namespace, write.key)] = None if write.is_delete else write.value
        event = None
        if action.events:
            cc_event = chaincode_event_pb2.ChaincodeEvent.FromString(action.events)
            if cc_event.event_name:  # the peer overwrites chaincode id and tx id with the real ones
                event = (action.chaincode_id.name, cc_event.event_name, cc_event.payload)
        return TxRecord(tx_id, transaction_pb2.VALID, writes, event)


class GatewayService(gateway_pb2_grpc.GatewayServicer):
    """``gateway.Gateway`` on top of the endorser, orderer and committer above."""

    def __init__(
        self,
        *,
        address: str,
        msp_id: str,
        channel: str,
        chaincode_name: str,
        membership: Membership,
        ledger: Ledger,
        orderer: Orderer,
        committer: Committer,
        peer_identity: bytes,
        peer_signer: EcdsaSigner,
        own_endorsements: OwnEndorsements,
    ) -> None:
        self.address = address
        self._msp_id = msp_id
        self._channel = channel
        self._chaincode = chaincode_name
        self._membership = membership
        self._ledger = ledger
        self._orderer = orderer
        self._committer = committer
        self._peer_identity = peer_identity
        self._peer_signer = peer_signer
        self._own_endorsements = own_endorsements

    def _detail(self, message: str) -> gateway_pb2.ErrorDetail:
        return gateway_pb2.ErrorDetail(address=self.address, msp_id=self._msp_id, message=message)

    # -- endorser --------------------------------------------------------------------------------------

    def _unpack_request(self, signed: proposal_pb2.SignedProposal, context: grpc.ServicerContext) -> _Unpacked:
        if not signed.proposal_bytes:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a proposed transaction is required")
        try:
            return _unpack(signed)
        except (DecodeError, ValueError) as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"failed to unpack transaction proposal: {exc}")

    def _check_proposal(self, up: _Unpacked) -> None:
        """The auth filters, then the endorser's validation and duplicate check."""
        timestamp = up.channel_header.timestamp.ToDatetime(tzinfo=datetime.UTC)
        now = datetime.datetime.now(datetime.UTC)
        if abs(now - timestamp) > TIME_WINDOW:
            raise _EndorserFailure(
                f"request unauthorized due to incorrect timestamp {timestamp.isoformat()}, peer time "
                f"{now.isoformat()}, peer.authentication.timewindow 15m0s",
                filtered=True,
            )
        header = up.channel_header
        if header.type != common_pb2.ENDORSER_TRANSACTION:
            raise _EndorserFailure(f"error validating proposal: invalid header type {header.type}")
        if header.epoch != 0:
            raise _EndorserFailure("error validating proposal: epoch is non-zero")
        nonce, creator = up.signature_header.nonce, up.signature_header.creator
        if not nonce or not creator:
            raise _EndorserFailure("error validating proposal: nonce and creator must not be empty")
        expected = compute_tx_id(nonce, creator)
        if header.tx_id != expected:
            raise _EndorserFailure(
                f"error validating proposal: incorrectly computed txid '{header.tx_id}' -- expected '{expected}'"
            )
        try:
            self._membership.verify(creator, up.signed.proposal_bytes, up.signed.signature)
        except AccessDenied as denied:
            log.info("devnet: access denied: %s", denied.reason)
            raise _EndorserFailure(
                f"error validating proposal: access denied: channel [{header.channel_id}] "
                f"creator org [{denied.msp_id}]"
            ) from None
        if self._ledger.find_transaction(header.tx_id) is not None:
            raise _EndorserFailure(f"duplicate transaction found [{header.tx_id}]. Creator [{creator.hex()}]")

    def _simulate(self, up: _Unpacked) -> tuple[Stub, Response]:
        """Run the chaincode on one committed snapshot of the state."""
        with self._ledger.snapshot() as connection:
            stub = Stub(
                namespace=up.chaincode,
                channel=up.channel_header.channel_id,
                tx_id=up.channel_header.tx_id,
                args=up.args,
                creator=up.signature_header.creator,
                transient=up.transient,
                read_state=functools.partial(Ledger.read_state, connection),
            )
            return stub, chaincode.invoke(stub)

    def _chain_info(self, args: list[bytes]) -> Response:
        """qscc: only GetChainInfo(channel) is offered."""
        function = args[0].decode("utf-8", "replace") if args else ""
        if function != "GetChainInfo":
            return Response(500, f"Requested function {function} not found.")
        if len(args) < 2 or args[1].decode("utf-8", "replace") != self._channel:
            return Response(500, "Failed to get chain info: channel not found")
        info = ledger_pb2.BlockchainInfo(
            height=self._ledger.height,
            currentBlockHash=self._ledger.current_hash,
            previousBlockHash=self._ledger.previous_hash,
        )
        return Response(200, "", info.SerializeToString())

    def Evaluate(  # gRPC method name
        self, request: gateway_pb2.EvaluateRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.EvaluateResponse:
        up = self._unpack_request(request.proposed_transaction, context)
        if up.channel_header.channel_id != self._channel or up.chaincode not in (self._chaincode, "qscc"):
            _abort(
                context, grpc.StatusCode.FAILED_PRECONDITION,
                f"no peers available to evaluate chaincode {up.chaincode} in channel {up.channel_header.channel_id}",
            )
        try:
            self._check_proposal(up)
        except _EndorserFailure as failure:
            if failure.filtered:
                _abort(context, grpc.StatusCode.UNAVAILABLE, _EVALUATE_FAILED, [self._detail(failure.message)])
            _abort(
                context, grpc.StatusCode.FAILED_PRECONDITION,
                f"evaluate call to endorser returned error: {failure.message}", [self._detail(failure.message)],
            )
        response = self._chain_info(up.args) if up.chaincode == "qscc" else self._simulate(up)[1]
        if response.status >= 400:
            message = f"chaincode response {response.status}, {response.message}"
            _abort(
                context, grpc.StatusCode.UNKNOWN,
                f"evaluate call to endorser returned error: {message}", [self._detail(message)],
            )
        return gateway_pb2.EvaluateResponse(
            result=proposal_response_pb2.Response(
                status=response.status, message=response.message, payload=response.payload
            )
        )

    def endorse(self, signed: proposal_pb2.SignedProposal) -> tuple[Stub, common_pb2.Envelope]:
        """Endorse one proposal in process, as :meth:`Endorse` does over gRPC; return the simulation and envelope.

        Raises :class:`EndorsementRefused` with the text a peer would put in the error detail.
        """
        try:
            up = _unpack(signed)
        except (DecodeError, ValueError) as exc:
            raise EndorsementRefused(f"failed to unpack transaction proposal: {exc}") from None
        if up.channel_header.channel_id != self._channel or up.chaincode != self._chaincode:
            raise EndorsementRefused(
                f"chaincode {up.chaincode} is not installed on channel {up.channel_header.channel_id}"
            )
        try:
            self._check_proposal(up)
        except _EndorserFailure as failure:
            raise EndorsementRefused(failure.message) from None
        stub, response = self._simulate(up)
        if response.status >= 400:
            raise EndorsementRefused(f"chaincode response {response.status}, {response.message}")
        return stub, self._envelope(up, stub, response)

    def Endorse(  # gRPC method name
        self, request: gateway_pb2.EndorseRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.EndorseResponse:
        up = self._unpack_request(request.proposed_transaction, context)
        if up.channel_header.channel_id != self._channel or up.chaincode != self._chaincode:
            _abort(
                context, grpc.StatusCode.FAILED_PRECONDITION,
                "no combination of peers can be derived which satisfy the endorsement policy: required "
                "chaincodes are not installed on sufficient peers",
            )
        try:
            self._check_proposal(up)
        except _EndorserFailure as failure:
            code = grpc.StatusCode.UNAVAILABLE if failure.filtered else grpc.StatusCode.ABORTED
            _abort(context, code, _ENDORSE_FAILED, [self._detail(failure.message)])
        stub, response = self._simulate(up)
        if response.status >= 400:
            message = f"chaincode response {response.status}, {response.message}"
            _abort(context, grpc.StatusCode.ABORTED, _ENDORSE_FAILED, [self._detail(message)])
        return gateway_pb2.EndorseResponse(prepared_transaction=self._envelope(up, stub, response))

    def _envelope(self, up: _Unpacked, stub: Stub, response: Response) -> common_pb2.Envelope:
        """Assemble the unsigned transaction envelope from one endorsement (F ``prepareTransaction``).

        Messages are filled in place (``add()``, attribute assignment) rather than nested keyword arguments,
        which copy every sub-message: endorsement is devnet's hottest path.
        """
        payload_without_transient = proposal_pb2.ChaincodeProposalPayload(input=up.input).SerializeToString()
        proposal_hash = hashlib.sha256(
            up.header.channel_header + up.header.signature_header + payload_without_transient
        ).digest()
        kv = kv_rwset_pb2.KVRWSet()
        for key, version in sorted(stub.reads.items()):
            read = kv.reads.add(key=key)
            if version is not None:  # an absent key is a read without version
                read.version.block_num, read.version.tx_num = version
        for key, value in sorted(stub.writes.items()):
            kv.writes.add(key=key, is_delete=value is None, value=value or b"")
        results = rwset_pb2.TxReadWriteSet(data_model=rwset_pb2.TxReadWriteSet.KV)
        results.ns_rwset.add(namespace=up.chaincode, rwset=kv.SerializeToString())
        action = proposal_pb2.ChaincodeAction(results=results.SerializeToString())
        if stub.event is not None:
            action.events = chaincode_event_pb2.ChaincodeEvent(
                chaincode_id=up.chaincode,
                tx_id=up.channel_header.tx_id,
                event_name=stub.event.name,
                payload=stub.event.payload,
            ).SerializeToString()
        action.response.status = response.status
        action.response.message = response.message
        action.response.payload = response.payload
        action.chaincode_id.name = up.chaincode
        action.chaincode_id.version = CHAINCODE_VERSION
        prp = proposal_response_pb2.ProposalResponsePayload(
            proposal_hash=proposal_hash, extension=action.SerializeToString()
        ).SerializeToString()
        digest = hashlib.sha256(prp + self._peer_identity).digest()
        signature = self._peer_signer(digest)
        self._own_endorsements.record(digest, signature)
        action_payload = transaction_pb2.ChaincodeActionPayload(chaincode_proposal_payload=payload_without_transient)
        action_payload.action.proposal_response_payload = prp
        action_payload.action.endorsements.add(endorser=self._peer_identity, signature=signature)
        transaction = transaction_pb2.Transaction()
        transaction.actions.add(header=up.header.signature_header, payload=action_payload.SerializeToString())
        payload = common_pb2.Payload(data=transaction.SerializeToString())
        payload.header.channel_header = up.header.channel_header
        payload.header.signature_header = up.header.signature_header
        return common_pb2.Envelope(payload=payload.SerializeToString())

    # -- orderer ---------------------------------------------------------------------------------------

    def Submit(  # gRPC method name
        self, request: gateway_pb2.SubmitRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.SubmitResponse:
        envelope = request.prepared_transaction
        if not envelope.payload:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a prepared transaction is required")
        if not envelope.signature:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "prepared transaction must be signed")
        if request.channel_id != self._channel:
            _abort(
                context, grpc.StatusCode.FAILED_PRECONDITION,
                f"failed to get config for channel [{request.channel_id}]: channel does not exist",
            )
        try:
            payload = common_pb2.Payload.FromString(envelope.payload)
            channel_header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
            creator = common_pb2.SignatureHeader.FromString(payload.header.signature_header).creator
        except DecodeError:
            _abort(
                context, grpc.StatusCode.ABORTED,
                "received unsuccessful response from orderer: status=BAD_REQUEST, info=bad payload",
            )
        if channel_header.channel_id != self._channel:
            _abort(
                context, grpc.StatusCode.ABORTED,
                "received unsuccessful response from orderer: status=NOT_FOUND, info=channel "
                f"{channel_header.channel_id} does not exist",
            )
        try:
            self._membership.verify(creator, envelope.payload, envelope.signature)
        except AccessDenied as denied:
            log.info("devnet: submit refused: %s", denied.reason)
            _abort(context, grpc.StatusCode.ABORTED, _WRITERS_FORBIDDEN)
        if not self._orderer.broadcast(envelope.SerializeToString()):
            _abort(context, grpc.StatusCode.UNAVAILABLE, "no orderers could successfully process transaction")
        return gateway_pb2.SubmitResponse()

    # -- committer-side queries ------------------------------------------------------------------------

    def _check_reader(self, request: bytes, signature: bytes, creator: bytes, context: grpc.ServicerContext,
                      channel: str) -> None:
        try:
            self._membership.verify(creator, request, signature)
        except AccessDenied:
            _abort(context, grpc.StatusCode.PERMISSION_DENIED, _READERS_DENIED.format(channel=channel))

    def CommitStatus(  # gRPC method name
        self, request: gateway_pb2.SignedCommitStatusRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.CommitStatusResponse:
        try:
            status_request = gateway_pb2.CommitStatusRequest.FromString(request.request)
        except DecodeError:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid status request")
        if not status_request.transaction_id or not status_request.channel_id or not status_request.identity:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a transaction ID, channel and identity are required")
        self._check_reader(
            request.request, request.signature, status_request.identity, context, status_request.channel_id
        )
        if status_request.channel_id != self._channel:
            _abort(context, grpc.StatusCode.ABORTED, f"channel does not exist: {status_request.channel_id}")
        while True:
            height = self._ledger.height
            found = self._ledger.find_transaction(status_request.transaction_id)
            if found is not None:
                return gateway_pb2.CommitStatusResponse(result=found[0], block_number=found[1])
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")
            if not context.is_active():
                _abort(context, grpc.StatusCode.CANCELLED, "context canceled")
            if self._committer.stopping:
                _abort(context, grpc.StatusCode.UNAVAILABLE, "peer is shutting down")
            self._committer.wait_for_height_above(height, min(remaining or 1.0, 1.0))

    def ChaincodeEvents(  # gRPC method name
        self, request: gateway_pb2.SignedChaincodeEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[gateway_pb2.ChaincodeEventsResponse]:
        try:
            events_request = gateway_pb2.ChaincodeEventsRequest.FromString(request.request)
        except DecodeError:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid event request")
        self._check_reader(
            request.request, request.signature, events_request.identity, context, events_request.channel_id
        )
        if events_request.channel_id != self._channel:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"channel not found: {events_request.channel_id}")
        position = events_request.start_position
        kind = position.WhichOneof("Type")
        if kind == "specified":
            block = position.specified.number
        elif kind in (None, "next_commit"):
            block = self._ledger.height
        else:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid start position type: {kind}")
        after = events_request.after_transaction_id
        if after:
            found = self._ledger.find_transaction(after)
            if found is not None:
                block = found[1]
        yield from self._stream_events(context, events_request.chaincode_id, block, after)

    def _stream_events(
        self, context: grpc.ServicerContext, chaincode_name: str, block: int, after: str
    ) -> Iterator[gateway_pb2.ChaincodeEventsResponse]:
        skipping = bool(after)  # suppress everything up to and including the event of ``after``
        while True:
            while self._ledger.height <= block:
                if not context.is_active() or self._committer.stopping:
                    return
                self._committer.wait_for_height_above(block, 0.5)
            end = min(self._ledger.height, block + 256)
            for number, stored in itertools.groupby(self._ledger.events(block, end), key=lambda e: e.block):
                matching = []
                for event in stored:
                    if skipping:
                        skipping = event.tx_id != after
                        continue
                    if event.chaincode == chaincode_name:
                        matching.append(
                            chaincode_event_pb2.ChaincodeEvent(
                                chaincode_id=event.chaincode,
                                tx_id=event.tx_id,
                                event_name=event.name,
                                payload=event.payload,
                            )
                        )
                if matching:
                    yield gateway_pb2.ChaincodeEventsResponse(events=matching, block_number=number)
            block = end


class DeliverService(events_pb2_grpc.DeliverServicer):
    """The peer's ``protos.Deliver``, filtered blocks only (``Deliver`` and ``DeliverWithPrivateData`` answer
    UNIMPLEMENTED), with the checks of Fabric's ``common/deliver`` handler and their final statuses: a bad
    envelope, header, timestamp (±15 min), TLS binding or seek info → BAD_REQUEST; another channel →
    NOT_FOUND; a creator or signature the MSP refuses → FORBIDDEN; a start block above the height →
    NOT_FOUND. Then one ``FilteredBlock`` per block from the start through the stop block (waiting for blocks
    not yet committed unless FAIL_IF_NOT_READY), then SUCCESS, and the next seek request on the same stream.
    Chaincode events appear, without payload, for VALID transactions only (devnet keeps no other's events).
    """

    def __init__(self, *, channel: str, membership: Membership, ledger: Ledger, committer: Committer,
                 tls_client_auth: bool) -> None:
        self._channel = channel
        self._membership = membership
        self._ledger = ledger
        self._committer = committer
        self._tls_client_auth = tls_client_auth

    def DeliverFiltered(  # gRPC method name
        self, request_iterator: Iterator[common_pb2.Envelope], context: grpc.ServicerContext
    ) -> Iterator[events_pb2.DeliverResponse]:
        for envelope in request_iterator:
            status = yield from self._deliver(envelope, context)
            yield events_pb2.DeliverResponse(status=status)
            if status != common_pb2.SUCCESS:
                return

    def _deliver(
        self, envelope: common_pb2.Envelope, context: grpc.ServicerContext
    ) -> Generator[events_pb2.DeliverResponse, None, int]:
        try:
            payload = common_pb2.Payload.FromString(envelope.payload)
            if not payload.HasField("header"):
                return common_pb2.BAD_REQUEST
            header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        except DecodeError:
            return common_pb2.BAD_REQUEST
        if not header.HasField("timestamp"):
            return common_pb2.BAD_REQUEST
        now = datetime.datetime.now(datetime.UTC)
        if abs(now - header.timestamp.ToDatetime(tzinfo=datetime.UTC)) > TIME_WINDOW:
            log.info("devnet: deliver refused: envelope timestamp more than 15m apart from server time")
            return common_pb2.BAD_REQUEST
        if self._tls_client_auth and header.tls_cert_hash != _client_cert_hash(context):
            log.info("devnet: deliver refused: TLS binding does not match the client certificate")
            return common_pb2.BAD_REQUEST
        if header.channel_id != self._channel:
            return common_pb2.NOT_FOUND
        try:
            creator = common_pb2.SignatureHeader.FromString(payload.header.signature_header).creator
            self._membership.verify(creator, envelope.payload, envelope.signature)
        except (DecodeError, AccessDenied) as exc:
            log.info("devnet: deliver refused: %s", getattr(exc, "reason", "bad signature header"))
            return common_pb2.FORBIDDEN
        try:
            seek = ab_pb2.SeekInfo.FromString(payload.data)
        except DecodeError:
            return common_pb2.BAD_REQUEST
        if not seek.HasField("start") or not seek.HasField("stop"):
            return common_pb2.BAD_REQUEST
        height = self._ledger.height
        start_kind = seek.start.WhichOneof("Type")
        if start_kind == "oldest":
            number = 0
        elif start_kind == "newest":
            number = height - 1
        elif start_kind == "next_commit":
            number = height
        elif start_kind == "specified" and seek.start.specified.number <= height:
            number = seek.start.specified.number
        else:  # the file ledger's iterator: a block beyond the next one, or no position
            return common_pb2.NOT_FOUND
        stop_kind = seek.stop.WhichOneof("Type")
        stop = 0  # what the handler leaves it at for a stop position it does not know
        if stop_kind == "oldest" or (stop_kind == "newest" and seek.start == seek.stop):
            stop = number
        elif stop_kind == "newest":
            stop = height - 1
        elif stop_kind == "specified":
            stop = seek.stop.specified.number
            if stop < number:
                return common_pb2.BAD_REQUEST
        while True:
            if seek.behavior == ab_pb2.SeekInfo.FAIL_IF_NOT_READY and number > self._ledger.height - 1:
                return common_pb2.NOT_FOUND
            while self._ledger.height <= number:
                if self._committer.stopping:
                    _abort(context, grpc.StatusCode.UNAVAILABLE, "peer is shutting down")
                if not context.is_active():
                    _abort(context, grpc.StatusCode.CANCELLED, "context canceled")
                self._committer.wait_for_height_above(number, 0.5)
            yield events_pb2.DeliverResponse(filtered_block=self._filtered_block(number))
            if number == stop:
                return common_pb2.SUCCESS
            number += 1

    def _filtered_block(self, number: int) -> events_pb2.FilteredBlock:
        block = events_pb2.FilteredBlock(channel_id=self._channel, number=number)
        if number == 0:  # the genesis block: one config transaction without id
            block.filtered_transactions.add(type=common_pb2.CONFIG, tx_validation_code=transaction_pb2.VALID)
            return block
        events = {event.tx_id: event for event in self._ledger.events(number, number + 1)}
        for tx_id, code in self._ledger.transactions(number):
            transaction = block.filtered_transactions.add(
                txid=tx_id, type=common_pb2.ENDORSER_TRANSACTION, tx_validation_code=code)
            event = events.get(tx_id) if code == transaction_pb2.VALID else None
            if event is not None:
                transaction.transaction_actions.chaincode_actions.add(chaincode_event=chaincode_event_pb2.ChaincodeEvent(
                    chaincode_id=event.chaincode, tx_id=tx_id, event_name=event.name))
        return block


def _client_cert_hash(context: grpc.ServicerContext) -> bytes:
    """SHA-256 of the DER of the client's TLS certificate (b"" without one)."""
    certs = context.auth_context().get("x509_pem_cert")
    return tls_cert_hash(certs[0]) if certs else b""


def _genesis_envelope(channel: str) -> bytes:
    """A config-type envelope standing for the channel's genesis configuration (block 0)."""
    header = common_pb2.ChannelHeader(type=common_pb2.CONFIG, channel_id=channel)
    payload = common_pb2.Payload(header=common_pb2.Header(channel_header=header.SerializeToString()))
    return common_pb2.Envelope(payload=payload.SerializeToString()).SerializeToString()


class DevnetServer:
    """Devnet in-process: ``DevnetServer(data_dir, port=0).start()`` … ``.stop()``.

    ``block_timeout`` (seconds) and ``block_size`` control block cutting; ``tls`` serves TLS with the
    generated TLS CA, ``tls_client_auth`` additionally requires client certificates (mutual TLS).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 7051,
        block_timeout: float = 0.25,
        block_size: int = 10,
        tls: bool = False,
        tls_client_auth: bool = False,
        max_workers: int = 256,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.credentials = pki.ensure_credentials(self.data_dir)
        self.host = host
        self.tls = tls or tls_client_auth
        self.tls_client_auth = tls_client_auth
        self.msp_id = MSP_ID
        self.channel = CHANNEL
        self.chaincode = CHAINCODE
        self.ledger = Ledger(self.data_dir / "ledger.sqlite3")
        ca = x509.load_pem_x509_certificate(self.credentials.ca_cert.read_bytes())
        self._membership = Membership({MSP_ID: ca})
        own_endorsements = OwnEndorsements()
        self._committer = Committer(self.ledger, self._membership, own_endorsements)
        if self.ledger.height == 0:
            self.ledger.append([_genesis_envelope(CHANNEL)], [])
        self._orderer = Orderer(self._committer.commit, block_size, block_timeout)
        self._executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="devnet-rpc")
        self._server = grpc.server(
            self._executor,
            options=[
                ("grpc.so_reuseport", 0),  # a second devnet on the same port must fail, not share it
                ("grpc.max_receive_message_length", 100 * MIB),
                ("grpc.max_send_message_length", 100 * MIB),
                # The peer's keepalive policy: clients pinging more often than every 60 s are cut off.
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 60_000),
            ],
        )
        self.port = self._bind(port)
        self.endpoint = f"{host}:{self.port}"
        peer_identity = identities_pb2.SerializedIdentity(
            mspid=MSP_ID, id_bytes=self.credentials.peer_cert.read_bytes()
        ).SerializeToString()
        self._service = GatewayService(
            address=self.endpoint,
            msp_id=MSP_ID,
            channel=CHANNEL,
            chaincode_name=CHAINCODE,
            membership=self._membership,
            ledger=self.ledger,
            orderer=self._orderer,
            committer=self._committer,
            peer_identity=peer_identity,
            peer_signer=EcdsaSigner.from_pem_file(self.credentials.peer_key),
            own_endorsements=own_endorsements,
        )
        gateway_pb2_grpc.add_GatewayServicer_to_server(self._service, self._server)
        events_pb2_grpc.add_DeliverServicer_to_server(DeliverService(
            channel=CHANNEL, membership=self._membership, ledger=self.ledger, committer=self._committer,
            tls_client_auth=self.tls_client_auth,
        ), self._server)

    def _bind(self, port: int) -> int:
        address = f"{self.host}:{port}"
        if not self.tls:
            bound = self._server.add_insecure_port(address)
        else:
            files = self.credentials
            credentials = grpc.ssl_server_credentials(
                [(files.tls_server_key.read_bytes(), files.tls_server_cert.read_bytes())],
                root_certificates=files.tls_ca_cert.read_bytes() if self.tls_client_auth else None,
                require_client_auth=self.tls_client_auth,
            )
            bound = self._server.add_secure_port(address, credentials)
        if not bound:
            raise OSError(f"devnet: cannot listen on {address}")
        return bound

    @property
    def user_cert_path(self) -> Path:
        return self.credentials.user_cert

    @property
    def user_key_path(self) -> Path:
        return self.credentials.user_key

    @property
    def tls_ca_cert_path(self) -> Path:
        return self.credentials.tls_ca_cert

    def env(self) -> dict[str, str]:
        """The environment variables a client (``gxbackend`` settings) needs to reach this devnet."""
        env = {
            "FABRIC_PEER_ENDPOINT": self.endpoint,
            "FABRIC_MSP_ID": self.msp_id,
            "FABRIC_CERT_PATH": str(self.user_cert_path.resolve()),
            "FABRIC_KEY_PATH": str(self.user_key_path.resolve()),
            "FABRIC_CHANNEL": self.channel,
            "FABRIC_CHAINCODE": self.chaincode,
        }
        if self.tls:
            env["FABRIC_TLS_CA_PATH"] = str(self.tls_ca_cert_path.resolve())
        return env

    def start(self) -> DevnetServer:
        self._orderer.start()
        self._server.start()
        log.info("devnet: listening on %s (height %d)", self.endpoint, self.ledger.height)
        return self

    def stop(self, grace: float = 1.0) -> None:
        """Cut pending transactions into blocks, end streams and waits, stop serving, close the ledger."""
        self._orderer.stop()
        self._committer.stop()
        self._server.stop(grace).wait()
        self._executor.shutdown(wait=False)  # idle workers exit and drop their ledger read connections
        self.ledger.close()

    def __enter__(self) -> DevnetServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def seed(self, calls: Iterable[tuple[str, Sequence[str]]], *, block_size: int = 500) -> list[str]:
        """Commit many transactions quickly, in process; return their tx ids (all VALID).

        Each call (``"Contract:Function"``, args) becomes a real proposal signed with the client user's key,
        endorsed by this devnet's endorser, signed as an envelope and validated by the committer (MVCC,
        duplicates, endorsement); only gRPC and the per-transaction commit wait are skipped, and blocks are cut
        every ``block_size`` transactions. A call that reads what a pending one writes closes the block first,
        so nothing fails on MVCC. For building large chains (projector benchmarks); may run while serving.
        Raises :class:`EndorsementRefused` (e.g. a chaincode error) for a call that cannot be endorsed.
        """
        from fabric_client import _builders

        creator = identities_pb2.SerializedIdentity(
            mspid=self.msp_id, id_bytes=self.user_cert_path.read_bytes()
        ).SerializeToString()
        signer = EcdsaSigner.from_pem_file(self.user_key_path)
        tx_ids: list[str] = []
        block: list[bytes] = []
        written: set[str] = set()
        for function, args in calls:
            tx_id, proposal_bytes = _builders.build_proposal(
                channel=self.channel, chaincode=self.chaincode, transaction_name=function, args=args,
                creator=creator, nonce=_builders.new_nonce(), timestamp_ns=time.time_ns(),
            )
            signed = proposal_pb2.SignedProposal(
                proposal_bytes=proposal_bytes, signature=signer(_builders.sha256(proposal_bytes))
            )
            try:
                stub, envelope = self._service.endorse(signed)
                stale = bool(written.intersection(stub.reads))  # it read state a pending transaction changes
            except EndorsementRefused:
                if not block:
                    raise
                stale = True  # e.g. USER_NOT_FOUND for a user created in the pending block: retry after it
            if stale:
                self._committer.commit(block)
                block, written = [], set()
                stub, envelope = self._service.endorse(signed)
            envelope.signature = signer(_builders.sha256(envelope.payload))
            block.append(envelope.SerializeToString())
            written.update(stub.writes)
            tx_ids.append(tx_id)
            if len(block) >= block_size:
                self._committer.commit(block)
                block, written = [], set()
        if block:
            self._committer.commit(block)
        return tx_ids

    def connect(self, *, timeouts: Timeouts | None = None, mutual_tls: bool | None = None) -> Gateway:
        """A :class:`~fabric_client.Gateway` for this devnet's client user (a test helper)."""
        from fabric_client.gateway import connect
        from fabric_client.identity import X509Identity

        identity = X509Identity.from_pem_file(self.msp_id, self.user_cert_path)
        signer = EcdsaSigner.from_pem_file(self.user_key_path)
        if not self.tls:
            return connect(self.endpoint, identity, signer, timeouts=timeouts)
        use_client_cert = self.tls_client_auth if mutual_tls is None else mutual_tls
        files = self.credentials
        return connect(
            self.endpoint,
            identity,
            signer,
            tls_root_cert=files.tls_ca_cert,
            client_cert=files.tls_client_cert if use_client_cert else None,
            client_key=files.tls_client_key if use_client_cert else None,
            timeouts=timeouts,
        )
