"""Fixtures: a devnet on a free loopback port with 50 ms blocks, a connected client, invalid transactions."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2
from fabric_protos.peer import proposal_pb2

from fabric_client import Contract, Gateway, Network, Transaction
from fabric_client.devnet import DevnetServer

VECTORS = Path(__file__).parent / "vectors"
_user_numbers = itertools.count(1)


def load_vector(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[DevnetServer]:
    server = DevnetServer(tmp_path / "devnet", port=0, block_timeout=0.05).start()
    yield server
    server.stop(grace=0)


@pytest.fixture
def gateway(devnet: DevnetServer) -> Iterator[Gateway]:
    with devnet.connect() as gateway:
        yield gateway


@pytest.fixture
def network(gateway: Gateway) -> Network:
    return gateway.network("gxchannel")


@pytest.fixture
def identity_contract(network: Network) -> Contract:
    return network.contract("gxcc", "IdentityContract")


@pytest.fixture
def tokenomics(network: Network) -> Contract:
    return network.contract("gxcc", "TokenomicsContract")


def new_user_args(nationality: str = "NG") -> list[str]:
    """CreateUser arguments for a fresh user (unique id and biometric hash)."""
    n = next(_user_numbers)
    return [f"user{n:028d}", f"{n:064x}", nationality, "30"]


def create_user(identity_contract: Contract, nationality: str = "NG") -> str:
    args = new_user_args(nationality)
    identity_contract.submit("CreateUser", *args)
    return args[0]


def invalid_copy(gateway: Gateway, transaction: Transaction, code_name: str) -> Transaction:
    """An endorsed ``transaction`` rewritten, under the same tx id and signed again by the client (so the orderer
    accepts it), the way a faulty endorser or client would get it wrong, so that a peer's committer validates it
    as ``code_name``: ``BAD_PAYLOAD`` (two actions), ``BAD_RWSET`` (a read-write set that does not parse),
    ``ENDORSEMENT_POLICY_FAILURE`` (no endorsement) or ``BAD_PROPOSAL_TXID`` (a nonce the tx id was not made
    from)."""
    from fabric_protos.peer import proposal_response_pb2, transaction_pb2

    prepared = gateway_pb2.PreparedTransaction.FromString(transaction.bytes())
    payload = common_pb2.Payload.FromString(prepared.envelope.payload)
    tx = transaction_pb2.Transaction.FromString(payload.data)
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
    if code_name == "BAD_PAYLOAD":
        tx.actions.append(tx.actions[0])
    elif code_name == "BAD_RWSET":
        response = proposal_response_pb2.ProposalResponsePayload.FromString(
            action_payload.action.proposal_response_payload)
        action = proposal_pb2.ChaincodeAction.FromString(response.extension)
        action.results = b"\xff\xff"
        response.extension = action.SerializeToString()
        action_payload.action.proposal_response_payload = response.SerializeToString()
    elif code_name == "ENDORSEMENT_POLICY_FAILURE":
        del action_payload.action.endorsements[:]
    elif code_name == "BAD_PROPOSAL_TXID":
        header = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
        header.nonce = bytes(reversed(header.nonce)) + b"x"
        payload.header.signature_header = header.SerializeToString()
    else:
        raise ValueError(f"no recipe for {code_name}")
    if code_name != "BAD_PAYLOAD":
        tx.actions[0].payload = action_payload.SerializeToString()
    payload.data = tx.SerializeToString()
    prepared.envelope.payload = payload.SerializeToString()
    prepared.envelope.signature = b""
    rewritten = gateway.transaction_from_bytes(prepared.SerializeToString())
    rewritten.sign()
    return rewritten
