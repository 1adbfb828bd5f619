"""Filtered block events (``protos.Deliver/DeliverFiltered``): the signed seek request, and devnet's deliver
handler with the start rules and final statuses of Fabric's ``common/deliver``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from fabric_protos.common import common_pb2
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import events_pb2, events_pb2_grpc

from fabric_client import (
    BlockEventsError,
    Contract,
    EcdsaSigner,
    FilteredBlock,
    Network,
    X509Identity,
    _builders,
    connect,
)
from fabric_client.devnet import DevnetServer, pki
from fabric_client.tests.conftest import create_user, new_user_args


def _next_blocks(stream, count: int, timeout: float = 10.0) -> list[FilteredBlock]:
    """``count`` blocks from ``stream``, or a failure after ``timeout`` (the stream never ends by itself)."""
    got: list[FilteredBlock] = []
    done = threading.Event()

    def read() -> None:
        for block in stream:
            got.append(block)
            if len(got) == count:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(timeout):
        stream.close()
        pytest.fail(f"{len(got)} of {count} blocks within {timeout} s")
    return got


def test_the_seek_request_is_the_go_sdks_signed_by_the_creator_over_its_payload(devnet: DevnetServer) -> None:
    creator = X509Identity.from_pem_file(devnet.msp_id, devnet.user_cert_path).creator
    payload = common_pb2.Payload.FromString(_builders.build_seek_payload(
        channel="gxchannel", creator=creator, start=7, timestamp_ns=1_700_000_000_123_000_000))
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    assert (header.type, header.channel_id, header.epoch, header.tx_id) == (
        common_pb2.DELIVER_SEEK_INFO, "gxchannel", 0, "")
    assert (header.timestamp.seconds, header.timestamp.nanos) == (1_700_000_000, 123_000_000)
    assert header.tls_cert_hash == b""
    signature_header = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
    assert (signature_header.creator, signature_header.nonce) == (creator, b"")
    seek = ab_pb2.SeekInfo.FromString(payload.data)
    assert seek.start.specified.number == 7
    assert seek.stop.specified.number == 2**64 - 1
    assert seek.behavior == ab_pb2.SeekInfo.BLOCK_UNTIL_READY
    starts = {name: ab_pb2.SeekInfo.FromString(common_pb2.Payload.FromString(_builders.build_seek_payload(
        channel="gxchannel", creator=creator, start=start, timestamp_ns=0)).data).start.WhichOneof("Type")
              for name, start in (("newest", _builders.NEWEST), ("next", None), ("zero", 0))}
    assert starts == {"newest": "newest", "next": "next_commit", "zero": "specified"}
    with pytest.raises(ValueError):
        _builders.build_seek_payload(channel="gxchannel", creator=creator, start=-1, timestamp_ns=0)


def test_from_the_newest_block_it_comes_at_once_then_every_new_block_with_each_tx_id_and_code(
    devnet: DevnetServer, identity_contract: Contract, tokenomics: Contract, network: Network
) -> None:
    sender, recipient = create_user(identity_contract), create_user(identity_contract)
    newest = network.chain_info().height - 1
    with network.filtered_blocks(newest=True) as stream:
        [first] = _next_blocks(stream, 1)
        assert first.number == newest
        transaction = tokenomics.new_proposal("TransferWithFees", [sender, recipient, "1000000", "", "", ""]).endorse()
        status = transaction.submit().status()
        transaction.submit()  # the same envelope again: DUPLICATE_TXID in a later block
        sentinel = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
        sentinel_status = sentinel.submit().status()
        blocks = _next_blocks(stream, sentinel_status.block_number - newest)
    assert [b.number for b in blocks] == list(range(newest + 1, sentinel_status.block_number + 1))
    seen = [(b.number, t.transaction_id, t.code_name) for b in blocks for t in b.transactions]
    copies = [(number, code) for number, tx_id, code in seen if tx_id == transaction.transaction_id]
    assert copies == [(status.block_number, "VALID"), (status.block_number + 1, "DUPLICATE_TXID")]
    assert (sentinel_status.block_number, sentinel.transaction_id, "VALID") in seen
    assert [t.successful for b in blocks for t in b.transactions if t.transaction_id == transaction.transaction_id] \
        == [True, False]


def test_from_block_0_the_genesis_config_transaction_then_every_block_in_order(
    devnet: DevnetServer, identity_contract: Contract, network: Network
) -> None:
    create_user(identity_contract)
    create_user(identity_contract)
    height = network.chain_info().height
    with network.filtered_blocks(start_block=0) as stream:
        blocks = _next_blocks(stream, height)
    assert [b.number for b in blocks] == list(range(height))
    assert [(t.transaction_id, t.code_name) for t in blocks[0].transactions] == [("", "VALID")]
    committed = [t.transaction_id for b in blocks[1:] for t in b.transactions]
    assert len(committed) == 2 and all(len(tx_id) == 64 for tx_id in committed)


def test_the_next_block_to_commit_is_a_valid_start_and_one_beyond_it_is_not_found(network: Network) -> None:
    height = network.chain_info().height
    with network.filtered_blocks(start_block=height) as stream:  # waits for it
        stream.close()
    with pytest.raises(BlockEventsError) as failure, network.filtered_blocks(start_block=height + 1) as stream:
        next(stream)
    assert failure.value.deliver_status == "NOT_FOUND"
    assert not failure.value.retryable


def test_a_certificate_not_issued_by_the_msp_ca_is_forbidden(devnet: DevnetServer) -> None:
    foreign_ca = pki.new_ca("ca.elsewhere.example.com")
    certificate, key = pki.issue(*foreign_ca, "Mallory@org1.example.com", unit="client")
    identity = X509Identity("Org1MSP", certificate.public_bytes(serialization.Encoding.PEM))
    with connect(devnet.endpoint, identity, EcdsaSigner(key)) as gateway, pytest.raises(BlockEventsError) as failure:
        next(gateway.network("gxchannel").filtered_blocks())
    assert failure.value.deliver_status == "FORBIDDEN"
    assert not failure.value.retryable


def _raw_deliver(devnet: DevnetServer, payload: bytes) -> list[events_pb2.DeliverResponse]:
    signer = EcdsaSigner.from_pem_file(devnet.user_key_path)
    envelope = common_pb2.Envelope(payload=payload, signature=signer(_builders.sha256(payload)))
    with grpc.insecure_channel(devnet.endpoint) as channel:
        return list(events_pb2_grpc.DeliverStub(channel).DeliverFiltered(iter([envelope]), timeout=10))


def test_a_request_20_minutes_old_or_for_another_channel_is_refused_with_the_peers_status(
    devnet: DevnetServer,
) -> None:
    creator = X509Identity.from_pem_file(devnet.msp_id, devnet.user_cert_path).creator
    old = _builders.build_seek_payload(channel="gxchannel", creator=creator, start=0,
                                       timestamp_ns=time.time_ns() - 20 * 60 * 1_000_000_000)
    elsewhere = _builders.build_seek_payload(channel="otherchannel", creator=creator, start=0,
                                             timestamp_ns=time.time_ns())
    assert [r.status for r in _raw_deliver(devnet, old)] == [common_pb2.BAD_REQUEST]
    assert [r.status for r in _raw_deliver(devnet, elsewhere)] == [common_pb2.NOT_FOUND]
    assert [r.status for r in _raw_deliver(devnet, b"\xff")] == [common_pb2.BAD_REQUEST]


def test_a_bounded_seek_ends_with_success_at_its_stop_block(devnet: DevnetServer, identity_contract: Contract) -> None:
    create_user(identity_contract)
    creator = X509Identity.from_pem_file(devnet.msp_id, devnet.user_cert_path).creator
    payload = common_pb2.Payload.FromString(_builders.build_seek_payload(
        channel="gxchannel", creator=creator, start=0, timestamp_ns=time.time_ns()))
    seek = ab_pb2.SeekInfo.FromString(payload.data)
    seek.stop.CopyFrom(ab_pb2.SeekPosition(newest=ab_pb2.SeekNewest()))
    payload.data = seek.SerializeToString()
    responses = _raw_deliver(devnet, payload.SerializeToString())
    assert [r.WhichOneof("Type") for r in responses] == ["filtered_block", "filtered_block", "status"]
    assert responses[-1].status == common_pb2.SUCCESS
    seek.start.CopyFrom(ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=1)))
    seek.stop.CopyFrom(ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=0)))
    payload.data = seek.SerializeToString()
    assert [r.status for r in _raw_deliver(devnet, payload.SerializeToString())] == [common_pb2.BAD_REQUEST]


def test_under_mutual_tls_the_request_is_bound_to_the_client_certificate(tmp_path: Path) -> None:
    with DevnetServer(tmp_path, port=0, block_timeout=0.05, tls_client_auth=True) as devnet:
        with devnet.connect(mutual_tls=True) as gateway, gateway.network(devnet.channel).filtered_blocks(
                start_block=0) as stream:
            [genesis] = _next_blocks(stream, 1)
        assert genesis.number == 0
        files = devnet.credentials
        identity = X509Identity.from_pem_file(devnet.msp_id, devnet.user_cert_path)
        credentials = grpc.ssl_channel_credentials(files.tls_ca_cert.read_bytes(), files.tls_client_key.read_bytes(),
                                                   files.tls_client_cert.read_bytes())
        payload = _builders.build_seek_payload(channel="gxchannel", creator=identity.creator, start=0,
                                               timestamp_ns=time.time_ns())  # no tls_cert_hash
        signer = EcdsaSigner.from_pem_file(devnet.user_key_path)
        envelope = common_pb2.Envelope(payload=payload, signature=signer(_builders.sha256(payload)))
        options = [("grpc.ssl_target_name_override", "peer0.org1.example.com")]
        with grpc.secure_channel(devnet.endpoint, credentials, options=options) as channel:
            responses = list(events_pb2_grpc.DeliverStub(channel).DeliverFiltered(iter([envelope]), timeout=10))
        assert [r.status for r in responses] == [common_pb2.BAD_REQUEST]


def test_a_stream_closed_by_the_client_ends_quietly_and_a_stopping_peer_breaks_it_retryably(tmp_path: Path) -> None:
    devnet = DevnetServer(tmp_path, port=0, block_timeout=0.05).start()
    try:
        with devnet.connect() as gateway:
            network = gateway.network(devnet.channel)
            stream = network.filtered_blocks(newest=True)
            _next_blocks(stream, 1)
            stream.close()
            assert list(stream) == []
            stream = network.filtered_blocks(newest=True)
            _next_blocks(stream, 1)
            failure: list[BaseException] = []

            def read() -> None:
                try:
                    list(stream)
                except BlockEventsError as exc:
                    failure.append(exc)

            reader = threading.Thread(target=read)
            reader.start()
            devnet.stop(grace=0.5)
            reader.join(10)
            assert len(failure) == 1 and failure[0].retryable, failure
    finally:
        devnet.stop(grace=0)
