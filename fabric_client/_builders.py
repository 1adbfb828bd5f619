"""Byte-exact builders for the messages a Gateway client signs (FABRIC_GATEWAY.md §2 and §3).

Pure functions from plain values to serialized protobufs, so the same code serves live calls, offline
signing and the fixed test vectors. Protobuf serialization is deterministic here (fields in number order,
no maps except the transient map, which never enters the signed transaction).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence

from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2
from google.protobuf import timestamp_pb2

NONCE_LENGTH = 24

Arg = str | bytes


def new_nonce() -> bytes:
    """24 random bytes, as every official SDK uses."""
    return os.urandom(NONCE_LENGTH)


def transaction_id(nonce: bytes, creator: bytes) -> str:
    """Lowercase hex SHA-256(nonce || creator); the peer recomputes it and rejects a mismatch."""
    return hashlib.sha256(nonce + creator).hexdigest()


def _as_bytes(arg: Arg) -> bytes:
    return arg.encode("utf-8") if isinstance(arg, str) else bytes(arg)


def chaincode_header_extension(chaincode: str) -> bytes:
    """``ChaincodeHeaderExtension{chaincode_id{name}}``; constant per chaincode, so callers may cache it."""
    return proposal_pb2.ChaincodeHeaderExtension(
        chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode)
    ).SerializeToString()


def build_proposal(
    *,
    channel: str,
    chaincode: str,
    transaction_name: str,
    args: Sequence[Arg],
    creator: bytes,
    nonce: bytes,
    timestamp_ns: int,
    transient: Mapping[str, bytes] | None = None,
    header_extension: bytes | None = None,
) -> tuple[str, bytes]:
    """Build ``peer.Proposal`` bytes; return ``(transaction_id, proposal_bytes)``."""
    tx_id = transaction_id(nonce, creator)
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.ENDORSER_TRANSACTION,
        timestamp=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
        channel_id=channel,
        tx_id=tx_id,
        extension=header_extension if header_extension is not None else chaincode_header_extension(chaincode),
    )
    signature_header = common_pb2.SignatureHeader(creator=creator, nonce=nonce)
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=signature_header.SerializeToString(),
    )
    spec = chaincode_pb2.ChaincodeSpec(
        chaincode_id=chaincode_pb2.ChaincodeID(name=chaincode),
        input=chaincode_pb2.ChaincodeInput(args=[transaction_name.encode("utf-8"), *map(_as_bytes, args)]),
    )
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=chaincode_pb2.ChaincodeInvocationSpec(chaincode_spec=spec).SerializeToString(),
        TransientMap=dict(transient or {}),
    )
    proposal = proposal_pb2.Proposal(header=header.SerializeToString(), payload=payload.SerializeToString())
    return tx_id, proposal.SerializeToString()


def build_commit_status_request(*, transaction_id: str, channel: str, creator: bytes) -> bytes:
    """``gateway.CommitStatusRequest`` bytes (no nonce or timestamp: one signature is valid forever)."""
    return gateway_pb2.CommitStatusRequest(
        transaction_id=transaction_id, channel_id=channel, identity=creator
    ).SerializeToString()


def build_chaincode_events_request(
    *,
    channel: str,
    chaincode: str,
    creator: bytes,
    start_block: int | None,
    after_transaction_id: str | None = None,
) -> bytes:
    """``gateway.ChaincodeEventsRequest`` bytes; no start block means NextCommit (the ledger height)."""
    if start_block is None:
        position = ab_pb2.SeekPosition(next_commit=ab_pb2.SeekNextCommit())
    else:
        position = ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=start_block))
    return gateway_pb2.ChaincodeEventsRequest(
        channel_id=channel,
        chaincode_id=chaincode,
        identity=creator,
        start_position=position,
        after_transaction_id=after_transaction_id or "",
    ).SerializeToString()


def sha256(data: bytes) -> bytes:
    """The digest every Fabric signature covers (SHA-256 whatever the curve, as default MSPs verify)."""
    return hashlib.sha256(data).digest()
