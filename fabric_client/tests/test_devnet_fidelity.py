"""Each fidelity trap of docs/FABRIC_GATEWAY.md §6: devnet fails exactly where a real peer fails."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.orderer import ab_pb2
from fabric_protos.peer import proposal_pb2

from fabric_client import (
    CommitError,
    CommitStatusError,
    Contract,
    EcdsaSigner,
    EndorseError,
    EvaluateError,
    Gateway,
    Network,
    Proposal,
    SubmitError,
    X509Identity,
    _builders,
    connect,
)
from fabric_client.devnet import DevnetServer, pki
from fabric_client.signing import CURVE_ORDERS
from fabric_client.tests.conftest import create_user, invalid_copy, new_user_args

N = CURVE_ORDERS["secp256r1"]


def high_s(signer: EcdsaSigner):
    """A signer whose signatures are valid ECDSA but always high-S (what raw `cryptography` gives half the time)."""

    def sign(digest: bytes) -> bytes:
        r, s = decode_dss_signature(signer(digest))
        return encode_dss_signature(r, N - s)

    return sign


def custom_proposal(
    gateway: Gateway,
    signer,
    *,
    args: list[str],
    tx_id: str | None = None,
    timestamp_ns: int | None = None,
    creator: bytes | None = None,
) -> Proposal:
    """A CreateUser proposal with chosen tx id, timestamp or creator, signed by ``signer``."""
    creator = creator or gateway.identity.creator
    nonce = _builders.new_nonce()
    real_tx_id, proposal_bytes = _builders.build_proposal(
        channel="gxchannel", chaincode="gxcc", transaction_name="IdentityContract:CreateUser", args=args,
        creator=creator, nonce=nonce, timestamp_ns=timestamp_ns or time.time_ns(),
    )
    if tx_id is not None:
        proposal = proposal_pb2.Proposal.FromString(proposal_bytes)
        header = common_pb2.Header.FromString(proposal.header)
        channel_header = common_pb2.ChannelHeader.FromString(header.channel_header)
        channel_header.tx_id = tx_id
        header.channel_header = channel_header.SerializeToString()
        proposal.header = header.SerializeToString()
        proposal_bytes = proposal.SerializeToString()
    proposed = gateway_pb2.ProposedTransaction(
        transaction_id=tx_id or real_tx_id,
        proposal=proposal_pb2.SignedProposal(
            proposal_bytes=proposal_bytes, signature=signer(_builders.sha256(proposal_bytes))
        ),
    )
    return gateway.proposal_from_bytes(proposed.SerializeToString())


@pytest.fixture
def user_signer(devnet: DevnetServer) -> EcdsaSigner:
    return EcdsaSigner.from_pem_file(devnet.user_key_path)


@pytest.fixture
def raw_stub(devnet: DevnetServer):
    with grpc.insecure_channel(devnet.endpoint) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


# -- identity and signature checks ---------------------------------------------------------------------


def test_a_high_s_proposal_signature_is_denied_access_at_evaluate_and_at_endorse(
    gateway: Gateway, user_signer: EcdsaSigner
) -> None:
    proposal = custom_proposal(gateway, high_s(user_signer), args=new_user_args())
    with pytest.raises(EvaluateError) as evaluate:
        proposal.evaluate()
    assert evaluate.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "access denied: channel [gxchannel] creator org [Org1MSP]" in evaluate.value.message
    with pytest.raises(EndorseError) as endorse:
        proposal.endorse()
    assert endorse.value.code == grpc.StatusCode.ABORTED
    assert "access denied: channel [gxchannel] creator org [Org1MSP]" in endorse.value.details[0].message
    assert endorse.value.access_denied and not endorse.value.retryable


def test_a_wrong_transaction_id_is_rejected_with_the_expected_one(gateway: Gateway, user_signer) -> None:
    proposal = custom_proposal(gateway, user_signer, args=new_user_args(), tx_id="ab" * 32)
    with pytest.raises(EndorseError) as failure:
        proposal.endorse()
    assert failure.value.code == grpc.StatusCode.ABORTED
    assert f"incorrectly computed txid '{'ab' * 32}' -- expected '" in failure.value.details[0].message
    with pytest.raises(EvaluateError) as evaluate:
        proposal.evaluate()
    assert evaluate.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_an_unknown_msp_is_denied_access(devnet: DevnetServer, tmp_path: Path) -> None:
    identity = X509Identity("Org2MSP", devnet.user_cert_path.read_bytes())
    with connect(devnet.endpoint, identity, EcdsaSigner.from_pem_file(devnet.user_key_path)) as gateway:
        contract = gateway.network("gxchannel").contract("gxcc", "IdentityContract")
        with pytest.raises(EndorseError) as failure:
            contract.submit("CreateUser", *new_user_args())
    assert "access denied: channel [gxchannel] creator org [Org2MSP]" in failure.value.details[0].message


def test_a_certificate_not_issued_by_the_msp_ca_is_denied_access(devnet: DevnetServer) -> None:
    foreign_ca = pki.new_ca("ca.elsewhere.example.com")
    certificate, key = pki.issue(*foreign_ca, "Mallory@org1.example.com", unit="client")
    from cryptography.hazmat.primitives import serialization

    identity = X509Identity("Org1MSP", certificate.public_bytes(serialization.Encoding.PEM))
    with connect(devnet.endpoint, identity, EcdsaSigner(key)) as gateway:
        contract = gateway.network("gxchannel").contract("gxcc", "TokenomicsContract")
        with pytest.raises(EvaluateError) as failure:
            contract.evaluate("GetBalance", "anyone")
    assert failure.value.code == grpc.StatusCode.FAILED_PRECONDITION and failure.value.access_denied


def test_a_proposal_older_than_the_15_minute_window_is_unavailable_and_flagged_stale(
    gateway: Gateway, user_signer
) -> None:
    twenty_minutes_ago = time.time_ns() - 20 * 60 * 1_000_000_000
    proposal = custom_proposal(gateway, user_signer, args=new_user_args(), timestamp_ns=twenty_minutes_ago)
    with pytest.raises(EndorseError) as failure:
        proposal.endorse()
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE
    assert "request unauthorized due to incorrect timestamp" in failure.value.details[0].message
    assert failure.value.stale_proposal


def test_a_high_s_envelope_signature_is_forbidden_by_the_orderer(
    devnet: DevnetServer, identity_contract: Contract, user_signer
) -> None:
    unsigned = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
    identity = X509Identity.from_pem_file(devnet.msp_id, devnet.user_cert_path)
    with connect(devnet.endpoint, identity, None) as keyless:
        bad = keyless.transaction_from_bytes(
            _unsigned(unsigned.bytes()), high_s(user_signer)(unsigned.digest())
        )
        with pytest.raises(SubmitError) as failure:
            bad.submit()
    assert failure.value.code == grpc.StatusCode.ABORTED
    assert "status=FORBIDDEN" in failure.value.message and not failure.value.retryable


def _unsigned(prepared_bytes: bytes) -> bytes:
    prepared = gateway_pb2.PreparedTransaction.FromString(prepared_bytes)
    prepared.envelope.signature = b""
    return prepared.SerializeToString()


def test_an_unsigned_envelope_is_an_invalid_argument(identity_contract: Contract, raw_stub) -> None:
    transaction = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
    prepared = gateway_pb2.PreparedTransaction.FromString(_unsigned(transaction.bytes()))
    with pytest.raises(grpc.RpcError) as failure:
        raw_stub.Submit(gateway_pb2.SubmitRequest(
            transaction_id=prepared.transaction_id, channel_id="gxchannel", prepared_transaction=prepared.envelope
        ))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.value.details() == "prepared transaction must be signed"


def test_a_high_s_commit_status_request_is_permission_denied(gateway: Gateway, user_signer) -> None:
    pending = gateway.network("gxchannel").new_commit("00" * 32)
    commit = gateway.commit_from_bytes(_without_signature(pending.bytes()), high_s(user_signer)(pending.digest()))
    with pytest.raises(CommitStatusError) as failure:
        commit.status(timeout=2)
    assert failure.value.code == grpc.StatusCode.PERMISSION_DENIED and not failure.value.retryable


def _without_signature(signed_bytes: bytes) -> bytes:
    signed = gateway_pb2.SignedCommitStatusRequest.FromString(signed_bytes)
    signed.signature = b""
    return signed.SerializeToString()


# -- duplicates -----------------------------------------------------------------------------------------


def test_a_proposal_for_an_already_committed_tx_id_is_refused_as_a_duplicate(identity_contract: Contract) -> None:
    proposal = identity_contract.new_proposal("CreateUser", new_user_args())
    proposal.endorse().submit().status()
    with pytest.raises(EndorseError) as failure:
        proposal.endorse()
    error = failure.value
    assert error.code == grpc.StatusCode.ABORTED and error.transaction_id == proposal.transaction_id
    assert f"duplicate transaction found [{proposal.transaction_id}]. Creator [" in error.details[0].message
    assert error.duplicate_transaction and not error.retryable


def test_endorsing_the_same_proposal_twice_is_allowed_while_it_is_not_committed(
    identity_contract: Contract,
) -> None:
    proposal = identity_contract.new_proposal("CreateUser", new_user_args())
    first, second = proposal.endorse(), proposal.endorse()
    assert first.transaction_id == second.transaction_id
    assert second.submit().status().successful


def test_the_same_signed_envelope_submitted_twice_commits_once_and_status_keeps_the_first_valid(
    devnet: DevnetServer, identity_contract: Contract, tokenomics: Contract, network: Network
) -> None:
    sender, recipient = create_user(identity_contract), create_user(identity_contract)
    start = network.chain_info().height
    transaction = tokenomics.new_proposal("TransferWithFees", [sender, recipient, "1000000", "", "", ""]).endorse()
    first = transaction.submit().status()
    transaction.submit()  # both Submits succeed: nothing rejects a duplicate before commit
    sentinel = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
    sentinel.submit().status(timeout=5)  # ordered after the copy: once it is committed, so is the copy
    assert network.commit_status(transaction.transaction_id, timeout=2) == first
    assert first.code_name == "VALID"
    copies = [
        (block, code)
        for block in range(start, devnet.ledger.height)
        for tx_id, code in devnet.ledger.transactions(block)
        if tx_id == transaction.transaction_id
    ]
    assert copies == [(first.block_number, 0), (first.block_number + 1, 9)]  # VALID, then DUPLICATE_TXID
    assert tokenomics.evaluate("GetBalance", sender) == b"499000000"
    events = _events_before(network, start, sentinel.transaction_id)
    assert [e.transaction_id for e in events] == [transaction.transaction_id]


def _events_before(network: Network, start_block: int, sentinel_tx_id: str) -> list:
    """Every event from ``start_block`` up to (not including) the event of a transaction submitted last.

    Streams stay open (as on a peer), so a known later event marks where to stop reading.
    """
    events = []
    with network.chaincode_events("gxcc", start_block=start_block, timeout=10) as stream:
        for event in stream:
            if event.transaction_id == sentinel_tx_id:
                return events
            events.append(event)
    raise AssertionError("the stream ended before the sentinel event")


# -- commit status ----------------------------------------------------------------------------------------


def test_commit_status_blocks_until_the_transaction_commits(identity_contract: Contract, network: Network) -> None:
    transaction = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
    submitter = threading.Timer(0.3, transaction.submit)
    started = time.monotonic()
    submitter.start()
    status = network.commit_status(transaction.transaction_id, timeout=5)
    assert status.successful and time.monotonic() - started >= 0.3


def test_commit_status_of_an_unknown_tx_id_waits_for_the_deadline_never_not_found(network: Network) -> None:
    started = time.monotonic()
    with pytest.raises(CommitStatusError) as failure:
        network.commit_status("f" * 64, timeout=0.3)
    assert failure.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert failure.value.retryable and time.monotonic() - started >= 0.3


# -- chaincode events start rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["oldest", "newest"])
def test_oldest_and_newest_start_positions_are_invalid_arguments(
    gateway: Gateway, user_signer, raw_stub, position: str
) -> None:
    request = gateway_pb2.ChaincodeEventsRequest(
        channel_id="gxchannel", chaincode_id="gxcc", identity=gateway.identity.creator,
        start_position=ab_pb2.SeekPosition(**{position: getattr(ab_pb2, f"Seek{position.title()}")()}),
    ).SerializeToString()
    signed = gateway_pb2.SignedChaincodeEventsRequest(request=request, signature=user_signer(_builders.sha256(request)))
    with pytest.raises(grpc.RpcError) as failure:
        next(raw_stub.ChaincodeEvents(signed, timeout=2))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid start position type" in failure.value.details()


def test_without_a_start_position_the_stream_begins_at_the_next_block_to_commit(
    identity_contract: Contract, network: Network
) -> None:
    create_user(identity_contract)  # history the stream must not replay
    with network.chaincode_events("gxcc", timeout=10) as stream:
        time.sleep(0.5)  # let the server register the stream at the current height
        later = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
        later.submit()
        event = next(stream)
    assert event.transaction_id == later.transaction_id


def test_resuming_with_a_checkpoint_delivers_no_duplicate_and_no_gap(tmp_path) -> None:
    from fabric_client import InMemoryCheckpointer
    from fabric_client.devnet.load import submit_many

    with DevnetServer(tmp_path, port=0, block_size=3, block_timeout=1) as devnet, devnet.connect() as gateway:
        network = gateway.network(devnet.channel)
        contract = network.contract(devnet.chaincode, "IdentityContract")
        statuses = submit_many(contract, [("CreateUser", new_user_args()) for _ in range(9)], in_flight=9)
        expected = sorted((s.block_number, s.transaction_id) for s in statuses)
        assert len({block for block, _ in expected}) < len(expected)  # some blocks hold several events
        checkpointer = InMemoryCheckpointer(block_number=0)
        delivered = []
        for stop_after in (1, 4, 2, 2):  # stop mid-block and at block ends, resume each time
            with network.chaincode_events("gxcc", checkpoint=checkpointer, timeout=5) as stream:
                for event in stream:
                    delivered.append((event.block_number, event.transaction_id))
                    checkpointer.checkpoint_chaincode_event(event)
                    if len(delivered) in (1, 5, 7, 9) and len(delivered) >= stop_after:
                        break
    order = {tx_id: i for i, (_, tx_id) in enumerate(expected)}
    assert sorted(delivered, key=lambda item: (item[0], order[item[1]])) == expected
    assert len(delivered) == len(set(delivered)) == 9


# -- MVCC and events of invalid transactions -------------------------------------------------------------------


def test_two_transfers_from_one_wallet_in_one_block_the_second_is_an_mvcc_read_conflict(tmp_path) -> None:
    with DevnetServer(tmp_path, port=0, block_size=2, block_timeout=10) as devnet, devnet.connect() as gateway:
        network = gateway.network(devnet.channel)
        identity_contract = network.contract(devnet.chaincode, "IdentityContract")
        tokenomics = network.contract(devnet.chaincode, "TokenomicsContract")
        users = [new_user_args() for _ in range(4)]
        for commit in [identity_contract.new_proposal("CreateUser", u).endorse().submit() for u in users]:
            assert commit.status(timeout=5).successful
        sender, first_to, second_to = users[0][0], users[1][0], users[2][0]
        # Both endorse on the same committed balance; ordered into one block (size 2), the second conflicts.
        first = tokenomics.new_proposal("TransferWithFees", [sender, first_to, "1000000", "", "", ""]).endorse()
        second = tokenomics.new_proposal("TransferWithFees", [sender, second_to, "2000000", "", "", ""]).endorse()
        first_commit, second_commit = first.submit(), second.submit()
        first_status, second_status = first_commit.status(timeout=5), second_commit.status(timeout=5)
        assert first_status.block_number == second_status.block_number
        assert first_status.code_name == "VALID"
        assert second_status.code_name == "MVCC_READ_CONFLICT" and second_status.code == 11
        assert tokenomics.evaluate("GetBalance", sender) == b"499000000"
        assert tokenomics.evaluate("GetBalance", second_to) == b"500000000"
        sentinels = [identity_contract.new_proposal("CreateUser", new_user_args()).endorse() for _ in range(2)]
        for sentinel in sentinels:  # two: a block holds two transactions here
            sentinel.submit()
        events = _events_before(network, first_status.block_number, sentinels[0].transaction_id)
        assert [e.transaction_id for e in events] == [first.transaction_id]  # invalid txs emit no event


def test_submit_raises_commit_error_with_the_validation_code_when_a_read_conflicts(tmp_path) -> None:
    with DevnetServer(tmp_path, port=0, block_size=2, block_timeout=10) as devnet, devnet.connect() as gateway:
        contract = gateway.network(devnet.channel).contract(devnet.chaincode, "IdentityContract")
        args = new_user_args()
        # The same user created twice: the first copy waits in the orderer (block size 2) while the second
        # endorses on the same state (user absent) and is ordered after it.
        first_commit = contract.new_proposal("CreateUser", args).endorse().submit()
        with pytest.raises(CommitError) as failure:
            contract.submit("CreateUser", *args)
        assert first_commit.status(timeout=5).successful
    assert failure.value.validation_code_name == "MVCC_READ_CONFLICT" and failure.value.retryable


# -- chaincode errors ----------------------------------------------------------------------------------------


def test_chaincode_errors_surface_as_typed_non_retryable_errors_with_their_code(
    identity_contract: Contract, tokenomics: Contract
) -> None:
    args = new_user_args()
    identity_contract.submit("CreateUser", *args)
    with pytest.raises(EndorseError) as endorse:
        identity_contract.submit("CreateUser", *args)
    assert endorse.value.code == grpc.StatusCode.ABORTED
    assert endorse.value.chaincode_code == "USER_EXISTS" and endorse.value.chaincode_status == 500
    assert endorse.value.details[0].message.startswith("chaincode response 500, [USER_EXISTS] user ")
    assert endorse.value.details[0].msp_id == "Org1MSP"
    assert not endorse.value.retryable
    with pytest.raises(EvaluateError) as evaluate:
        tokenomics.evaluate("GetBalance", "nobody")
    assert evaluate.value.code == grpc.StatusCode.UNKNOWN
    assert evaluate.value.message == (
        "evaluate call to endorser returned error: chaincode response 500, [USER_NOT_FOUND] user nobody not found"
    )
    assert evaluate.value.chaincode_code == "USER_NOT_FOUND" and not evaluate.value.retryable


def test_an_unknown_function_fails_with_status_500_and_no_bracketed_code(tokenomics: Contract) -> None:
    with pytest.raises(EvaluateError) as failure:
        tokenomics.evaluate("Mint", "x")
    assert failure.value.chaincode_status == 500 and failure.value.chaincode_code is None


def test_reads_inside_a_transaction_see_committed_state_only() -> None:
    from fabric_client.devnet.shim import Stub

    committed = {("gxcc", "k"): (b"old", (3, 1))}
    stub = Stub(namespace="gxcc", channel="gxchannel", tx_id="t", args=[], creator=b"", transient={},
                read_state=lambda namespace, key: committed.get((namespace, key)))
    stub.put_state("k", b"new")
    assert stub.get_state("k") == b"old"
    assert stub.get_state("absent") is None
    assert stub.reads == {"k": (3, 1), "absent": None}
    stub.set_event("First", b"1")
    stub.set_event("Second", b"2")
    assert stub.event is not None and stub.event.name == "Second"  # at most one event: the last one wins


def test_the_envelope_result_is_the_event_payload_of_the_transaction(identity_contract: Contract) -> None:
    transaction = identity_contract.new_proposal("CreateUser", new_user_args()).endorse()
    assert json.loads(transaction.result)["genesisAmount"] == "500000000"


def test_a_client_that_rewrites_the_endorsed_writes_commits_as_endorsement_policy_failure(
    gateway: Gateway, identity_contract: Contract, tokenomics: Contract, user_signer
) -> None:
    from fabric_protos.ledger.rwset import rwset_pb2
    from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
    from fabric_protos.peer import proposal_response_pb2, transaction_pb2

    args = new_user_args()
    endorsed = identity_contract.new_proposal("CreateUser", args).endorse()
    prepared = gateway_pb2.PreparedTransaction.FromString(endorsed.bytes())
    payload = common_pb2.Payload.FromString(prepared.envelope.payload)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
    response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
        action_payload.action.proposal_response_payload
    )
    action = proposal_pb2.ChaincodeAction.FromString(response_payload.extension)
    results = rwset_pb2.TxReadWriteSet.FromString(action.results)
    kv = kv_rwset_pb2.KVRWSet.FromString(results.ns_rwset[0].rwset)
    for write in kv.writes:
        write.value = write.value.replace(b"500000000", b"900000000")  # mint money for oneself
    results.ns_rwset[0].rwset = kv.SerializeToString()
    action.results = results.SerializeToString()
    response_payload.extension = action.SerializeToString()
    action_payload.action.proposal_response_payload = response_payload.SerializeToString()
    transaction.actions[0].payload = action_payload.SerializeToString()
    payload.data = transaction.SerializeToString()
    prepared.envelope.payload = payload.SerializeToString()
    prepared.envelope.signature = user_signer(_builders.sha256(prepared.envelope.payload))  # the orderer accepts it

    status = gateway.transaction_from_bytes(prepared.SerializeToString()).submit().status(timeout=5)
    assert status.code_name == "ENDORSEMENT_POLICY_FAILURE" and not status.successful
    with pytest.raises(EvaluateError) as failure:
        tokenomics.evaluate("GetBalance", args[0])
    assert failure.value.chaincode_code == "USER_NOT_FOUND"  # nothing was written


@pytest.mark.parametrize("code_name", ["BAD_PAYLOAD", "BAD_RWSET", "ENDORSEMENT_POLICY_FAILURE", "BAD_PROPOSAL_TXID"])
def test_an_invalid_transaction_commits_with_its_code_writes_nothing_and_burns_its_tx_id(
    gateway: Gateway, identity_contract: Contract, tokenomics: Contract, code_name: str
) -> None:
    args = new_user_args()
    proposal = identity_contract.new_proposal("CreateUser", args)
    status = invalid_copy(gateway, proposal.endorse(), code_name).submit().status(timeout=5)
    assert (status.code_name, status.successful, status.transaction_id) == (code_name, False, proposal.transaction_id)
    with pytest.raises(EvaluateError) as failure:
        tokenomics.evaluate("GetBalance", args[0])
    assert failure.value.chaincode_code == "USER_NOT_FOUND"  # nothing was written
    with pytest.raises(EndorseError) as refused:  # the tx id is in the ledger: it can never commit again
        proposal.endorse()
    assert refused.value.duplicate_transaction
