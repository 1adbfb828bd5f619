"""The builders reproduce the byte vectors a real Fabric v3 peer accepted (vectors/fabric-gateway.json)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from fabric_client import EcdsaSigner, X509Identity, _builders
from fabric_client.signing import CURVE_ORDERS, is_low_s, to_low_s
from fabric_client.tests.conftest import load_vector

VECTORS = load_vector("fabric-gateway.json")
IDENTITY = X509Identity(VECTORS["msp_id"], VECTORS["cert_pem"].encode())


def test_creator_bytes_are_the_serialized_identity_of_the_vector() -> None:
    assert IDENTITY.creator.hex() == VECTORS["creator_serialized_identity_hex"]


@pytest.mark.parametrize("case", VECTORS["proposals"], ids=lambda case: case["transaction_name"])
def test_proposal_bytes_and_tx_id_match_the_vector_exactly(case: dict) -> None:
    timestamp = case["timestamp"]
    tx_id, proposal_bytes = _builders.build_proposal(
        channel=VECTORS["channel"],
        chaincode=VECTORS["chaincode"],
        transaction_name=case["transaction_name"],
        args=case["args"],
        creator=IDENTITY.creator,
        nonce=bytes.fromhex(case["nonce_hex"]),
        timestamp_ns=timestamp["seconds"] * 1_000_000_000 + timestamp["nanos"],
    )
    assert tx_id == case["tx_id"]
    assert proposal_bytes.hex() == case["proposal_bytes_hex"]
    assert hashlib.sha256(proposal_bytes).hexdigest() == case["proposal_digest_sha256_hex"]


def test_commit_status_request_bytes_match_the_vector() -> None:
    case = VECTORS["commit_status_request"]
    request = _builders.build_commit_status_request(
        transaction_id=case["tx_id"], channel=VECTORS["channel"], creator=IDENTITY.creator
    )
    assert request.hex() == case["request_bytes_hex"]


def test_chaincode_events_request_bytes_match_the_vector() -> None:
    case = VECTORS["chaincode_events_request"]
    request = _builders.build_chaincode_events_request(
        channel=VECTORS["channel"],
        chaincode=VECTORS["chaincode"],
        creator=IDENTITY.creator,
        start_block=case["start_block"],
        after_transaction_id=case["after_transaction_id"],
    )
    assert request.hex() == case["request_bytes_hex"]


def test_a_high_s_signature_is_normalised_to_the_vectors_low_s_der() -> None:
    case = VECTORS["low_s"]
    order = int(case["order_n_hex"], 16)
    assert order == CURVE_ORDERS["secp256r1"]
    high = encode_dss_signature(int(case["r_hex"], 16), int(case["s_high_hex"], 16))
    assert not is_low_s(high, order)
    low = to_low_s(high, order)
    assert low.hex() == case["der_low_s_hex"]
    assert int(case["s_low_hex"], 16) == order - int(case["s_high_hex"], 16)
    assert to_low_s(low, order) == low


def test_the_signer_always_produces_low_s_signatures_that_verify_with_the_certificate() -> None:
    signer = EcdsaSigner.from_pem(VECTORS["key_pem_pkcs8"].encode())
    public_key = x509.load_pem_x509_certificate(VECTORS["cert_pem"].encode()).public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    digest = bytes.fromhex(VECTORS["proposals"][0]["proposal_digest_sha256_hex"])
    for _ in range(64):  # a raw signature is high-S about half the time
        signature = signer(digest)
        assert is_low_s(signature, CURVE_ORDERS["secp256r1"])
        public_key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


@pytest.mark.parametrize("transient", [None, {"k": b"v"}, {"": b"x", "empty": b""}])
@pytest.mark.parametrize("args", [[], [""], ["x", b"\x00\xff", "", "é" * 9000]])
def test_the_hand_written_encoder_equals_the_official_protobuf_messages(args: list, transient: dict | None) -> None:
    from fabric_protos.common import common_pb2
    from fabric_protos.peer import chaincode_pb2, proposal_pb2
    from google.protobuf import timestamp_pb2

    nonce = bytes(range(24))
    tx_id, proposal_bytes = _builders.build_proposal(
        channel="gxchannel", chaincode="gxcc", transaction_name="C:F", args=args, creator=IDENTITY.creator,
        nonce=nonce, timestamp_ns=1_767_225_600_000_000_000, transient=transient,
    )
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.ENDORSER_TRANSACTION, timestamp=timestamp_pb2.Timestamp(seconds=1_767_225_600),
        channel_id="gxchannel", tx_id=tx_id, extension=_builders.chaincode_header_extension("gxcc"),
    )
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=common_pb2.SignatureHeader(creator=IDENTITY.creator, nonce=nonce).SerializeToString(),
    )
    spec = chaincode_pb2.ChaincodeSpec(
        chaincode_id=chaincode_pb2.ChaincodeID(name="gxcc"),
        input=chaincode_pb2.ChaincodeInput(args=[b"C:F", *(a if isinstance(a, bytes) else a.encode() for a in args)]),
    )
    invocation = chaincode_pb2.ChaincodeInvocationSpec(chaincode_spec=spec).SerializeToString()
    parsed = proposal_pb2.Proposal.FromString(proposal_bytes)
    assert parsed.header == header.SerializeToString()
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(parsed.payload)
    assert payload.input == invocation
    assert dict(payload.TransientMap) == (transient or {})
    if not transient:
        assert proposal_bytes == proposal_pb2.Proposal(
            header=header.SerializeToString(),
            payload=proposal_pb2.ChaincodeProposalPayload(input=invocation).SerializeToString(),
        ).SerializeToString()


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["P-256", "P-384"])
def test_low_s_normalisation_agrees_with_cryptography_on_random_signatures(curve: ec.EllipticCurve) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.generate_private_key(curve)
    order = CURVE_ORDERS[curve.name]
    for n in range(200):
        digest = hashlib.sha256(n.to_bytes(4, "big")).digest()
        raw = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(raw)
        low = to_low_s(raw, order)
        assert low == encode_dss_signature(r, min(s, order - s))
        key.public_key().verify(low, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["P-256", "P-384"])
def test_the_signer_returns_only_low_s_signatures_on_both_curves(curve: ec.EllipticCurve) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.generate_private_key(curve)
    signer = EcdsaSigner(key)
    for n in range(300):
        digest = hashlib.sha256(n.to_bytes(4, "big")).digest()
        signature = signer(digest)
        assert decode_dss_signature(signature)[1] <= CURVE_ORDERS[curve.name] // 2
        key.public_key().verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
