"""Every Gateway RPC's success path, over real gRPC on loopback, through the public client API."""

from __future__ import annotations

import json
import threading

import pytest
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2

from fabric_client import (
    Contract,
    EcdsaSigner,
    GatewayError,
    InMemoryCheckpointer,
    Network,
    X509Identity,
    connect,
)
from fabric_client.devnet import DevnetServer
from fabric_client.tests.conftest import create_user, new_user_args


def test_evaluate_returns_the_chaincode_result_without_ordering_anything(
    identity_contract: Contract, tokenomics: Contract, network: Network
) -> None:
    user = create_user(identity_contract)
    height = network.chain_info().height
    assert tokenomics.evaluate("GetBalance", user) == b"500000000"
    assert network.chain_info().height == height


def test_submit_endorses_orders_and_waits_for_commit_then_returns_the_result(
    identity_contract: Contract, tokenomics: Contract
) -> None:
    args = new_user_args()
    result = json.loads(identity_contract.submit("CreateUser", *args))
    assert result == {"v": 1, "userId": args[0], "nationality": "NG", "genesisAmount": "500000000",
                      "balance": "500000000"}
    assert tokenomics.evaluate("GetBalance", args[0]) == b"500000000"


def test_the_step_wise_flow_exposes_tx_id_bytes_digest_result_and_status(identity_contract: Contract) -> None:
    proposal = identity_contract.new_proposal("CreateUser", new_user_args())
    assert len(proposal.transaction_id) == 64
    assert proposal.signed and len(proposal.digest()) == 32 and proposal.bytes()
    transaction = proposal.endorse()
    assert transaction.transaction_id == proposal.transaction_id
    assert json.loads(transaction.result)["balance"] == "500000000"
    assert transaction.signed and len(transaction.digest()) == 32
    status = transaction.submit().status(timeout=5)
    assert status.successful and status.code == 0 and status.code_name == "VALID"
    assert status.transaction_id == proposal.transaction_id
    assert status.block_number >= 1  # block 0 is the genesis block


def test_a_stored_signed_transaction_is_submitted_by_a_gateway_without_a_private_key(
    devnet: DevnetServer, identity_contract: Contract, network: Network, tokenomics: Contract
) -> None:
    args = new_user_args()
    stored = identity_contract.new_proposal("CreateUser", args).endorse().bytes()
    identity = X509Identity.from_pem_file(devnet.msp_id, devnet.user_cert_path)
    with connect(devnet.endpoint, identity, None) as keyless:
        transaction = keyless.transaction_from_bytes(stored)
        assert json.loads(transaction.result)["userId"] == args[0]
        transaction.submit()
    assert network.commit_status(transaction.transaction_id, timeout=5).code_name == "VALID"
    assert tokenomics.evaluate("GetBalance", args[0]) == b"500000000"


def test_offline_signing_signs_each_digest_outside_the_gateway(devnet: DevnetServer) -> None:
    identity = X509Identity.from_pem_file(devnet.msp_id, devnet.user_cert_path)
    external_signer = EcdsaSigner.from_pem_file(devnet.user_key_path)  # stands for an HSM or a remote signer
    with connect(devnet.endpoint, identity, None) as gateway:
        contract = gateway.network(devnet.channel).contract(devnet.chaincode, "IdentityContract")
        unsigned = contract.new_proposal("CreateUser", new_user_args())
        assert not unsigned.signed
        with pytest.raises(GatewayError, match="no signer"):
            unsigned.endorse()
        proposal = gateway.proposal_from_bytes(unsigned.bytes(), external_signer(unsigned.digest()))
        unsigned_transaction = proposal.endorse()
        assert not unsigned_transaction.signed
        transaction = gateway.transaction_from_bytes(
            unsigned_transaction.bytes(), external_signer(unsigned_transaction.digest())
        )
        transaction.submit()
        pending = gateway.network(devnet.channel).new_commit(transaction.transaction_id)
        commit = gateway.commit_from_bytes(pending.bytes(), external_signer(pending.digest()))
        assert commit.status(timeout=5).successful


def test_commit_status_answers_for_any_transaction_id_already_committed(
    identity_contract: Contract, network: Network
) -> None:
    transaction = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
    first = transaction.submit().status()
    again = network.commit_status(transaction.transaction_id, timeout=1)
    assert again == first


def test_chain_info_reports_height_and_links_the_block_hashes(
    identity_contract: Contract, network: Network
) -> None:
    before = network.chain_info()
    assert before.height >= 1 and len(before.current_block_hash) == 32
    create_user(identity_contract)
    after = network.chain_info()
    assert after.height == before.height + 1
    assert after.previous_block_hash == before.current_block_hash


def test_chaincode_events_stream_delivers_each_committed_event_with_its_block_and_tx_id(
    identity_contract: Contract, network: Network
) -> None:
    start = network.chain_info().height
    transaction = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
    status = transaction.submit().status()
    with network.chaincode_events("gxcc", start_block=start, timeout=5) as stream:
        event = next(stream)
    assert event.block_number == status.block_number
    assert event.transaction_id == transaction.transaction_id
    assert event.chaincode_name == "gxcc" and event.event_name == "UserCreated"
    assert event.payload == transaction.result


def test_chaincode_event_blocks_group_all_events_of_one_block(tmp_path) -> None:
    with DevnetServer(tmp_path, port=0, block_size=3, block_timeout=10) as devnet, devnet.connect() as gateway:
        network = gateway.network(devnet.channel)
        contract = network.contract(devnet.chaincode, "IdentityContract")
        transactions = [contract.new_proposal("CreateUser", new_user_args()).endorse() for _ in range(3)]
        commits = [t.submit() for t in transactions]  # the third one fills the block
        assert {c.status(timeout=5).block_number for c in commits} == {1}
        with network.chaincode_event_blocks("gxcc", start_block=0, timeout=5) as stream:
            block = next(stream)
    assert block.block_number == 1
    assert [e.transaction_id for e in block.events] == [t.transaction_id for t in transactions]


def test_closing_an_event_stream_from_another_thread_ends_iteration_quietly(network: Network) -> None:
    stream = network.chaincode_events("gxcc")
    received: list[object] = []
    reader = threading.Thread(target=lambda: received.extend(stream))
    reader.start()
    stream.close()
    reader.join(5)
    assert not reader.is_alive() and received == []


def test_resuming_from_an_in_memory_checkpoint_continues_after_the_last_processed_event(
    identity_contract: Contract, network: Network
) -> None:
    start = network.chain_info().height
    create_user(identity_contract)
    create_user(identity_contract)
    checkpointer = InMemoryCheckpointer()
    with network.chaincode_events("gxcc", start_block=start, timeout=5) as stream:
        first = next(stream)
        checkpointer.checkpoint_chaincode_event(first)
    with network.chaincode_events("gxcc", checkpoint=checkpointer, timeout=5) as stream:
        second = next(stream)
    assert second.block_number > first.block_number


def test_transient_data_reaches_the_chaincode_but_never_the_transaction(identity_contract: Contract) -> None:
    secret = b"transient-secret-value"
    proposal = identity_contract.new_proposal("CreateUser", new_user_args(), transient={"secret": secret})
    assert secret in proposal.bytes()
    transaction = proposal.endorse()
    assert secret not in transaction.bytes()
    assert transaction.submit().status().successful


def test_the_envelope_carries_the_proposal_headers_unchanged(identity_contract: Contract) -> None:
    proposal = identity_contract.new_proposal("CreateUser", new_user_args())
    transaction = proposal.endorse()
    envelope = gateway_pb2.PreparedTransaction.FromString(transaction.bytes()).envelope
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    assert header.tx_id == proposal.transaction_id
    assert header.channel_id == "gxchannel" and header.type == common_pb2.ENDORSER_TRANSACTION


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_the_client_connects_over_tls_with_a_server_name_override(tmp_path, mutual: bool) -> None:
    with DevnetServer(tmp_path, port=0, block_timeout=0.05, tls=True, tls_client_auth=mutual) as devnet:
        files = devnet.credentials
        identity = X509Identity.from_pem_file(devnet.msp_id, devnet.user_cert_path)
        with connect(
            devnet.endpoint,
            identity,
            EcdsaSigner.from_pem_file(devnet.user_key_path),
            tls_root_cert=files.tls_ca_cert,
            tls_server_name="peer0.org1.example.com",
            client_cert=files.tls_client_cert if mutual else None,
            client_key=files.tls_client_key if mutual else None,
        ) as gateway:
            assert gateway.network(devnet.channel).chain_info().height == 1


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path) -> None:
    with DevnetServer(tmp_path, port=0, tls_client_auth=True) as devnet, devnet.connect(mutual_tls=False) as gateway:
        with pytest.raises(GatewayError) as failure:
            gateway.network(devnet.channel).chain_info(timeout=2)
        assert failure.value.retryable  # UNAVAILABLE: the handshake failed
