"""Devnet as a process: the command line prints the client environment, stops cleanly and keeps the chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_client import EcdsaSigner, X509Identity, connect
from fabric_client.devnet import DevnetServer
from fabric_client.devnet.process import DevnetProcess
from fabric_client.tests.conftest import create_user, new_user_args


def test_a_restart_on_the_same_data_dir_keeps_the_chain_state_index_and_events(tmp_path: Path) -> None:
    with DevnetServer(tmp_path, port=0, block_timeout=0.05) as devnet, devnet.connect() as gateway:
        network = gateway.network(devnet.channel)
        user = create_user(network.contract("gxcc", "IdentityContract"))
        before = network.chain_info()
        transaction = network.contract("gxcc", "IdentityContract").new_proposal("CreateUser", new_user_args())
        status = transaction.endorse().submit().status()
        port = devnet.port
    with DevnetServer(tmp_path, port=port, block_timeout=0.05) as devnet, devnet.connect() as gateway:
        network = gateway.network(devnet.channel)
        assert network.chain_info().height == before.height + 1
        assert network.commit_status(transaction.transaction_id, timeout=1) == status
        assert network.contract("gxcc", "TokenomicsContract").evaluate("GetBalance", user) == b"500000000"
        with network.chaincode_events("gxcc", start_block=0, timeout=5) as stream:
            assert [next(stream).block_number, next(stream).block_number] == [1, status.block_number]
        create_user(network.contract("gxcc", "IdentityContract"))
        assert network.chain_info().height == before.height + 2


@pytest.mark.slow
def test_the_cli_prints_the_client_environment_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    devnet = DevnetProcess(tmp_path / "devnet", block_timeout_ms=50).start()
    try:
        env = devnet.env
        assert set(env) == {"FABRIC_PEER_ENDPOINT", "FABRIC_MSP_ID", "FABRIC_CERT_PATH", "FABRIC_KEY_PATH",
                            "FABRIC_CHANNEL", "FABRIC_CHAINCODE"}
        assert env["FABRIC_MSP_ID"] == "Org1MSP" and env["FABRIC_CHANNEL"] == "gxchannel"
        assert env["FABRIC_CHAINCODE"] == "gxcc"
        identity = X509Identity.from_pem_file(env["FABRIC_MSP_ID"], env["FABRIC_CERT_PATH"])
        signer = EcdsaSigner.from_pem_file(env["FABRIC_KEY_PATH"])
        with connect(env["FABRIC_PEER_ENDPOINT"], identity, signer) as gateway:
            contract = gateway.network(env["FABRIC_CHANNEL"]).contract(env["FABRIC_CHAINCODE"], "IdentityContract")
            assert create_user(contract)
    finally:
        assert devnet.terminate() == 0


@pytest.mark.slow
def test_transactions_accepted_before_sigterm_are_committed_and_found_after_a_restart(tmp_path: Path) -> None:
    devnet = DevnetProcess(tmp_path / "devnet", block_timeout_ms=60_000).start()  # no block would be cut
    identity = X509Identity.from_pem_file("Org1MSP", devnet.env["FABRIC_CERT_PATH"])
    signer = EcdsaSigner.from_pem_file(devnet.env["FABRIC_KEY_PATH"])
    with connect(devnet.endpoint, identity, signer) as gateway:
        contract = gateway.network("gxchannel").contract("gxcc", "IdentityContract")
        transaction = contract.new_proposal("CreateUser", new_user_args()).endorse()
        transaction.submit()
    assert devnet.terminate() == 0
    restarted = DevnetProcess(tmp_path / "devnet", port=devnet.port, block_timeout_ms=50).start()
    try:
        with connect(restarted.endpoint, identity, signer) as gateway:
            status = gateway.network("gxchannel").commit_status(transaction.transaction_id, timeout=5)
        assert status.successful and status.block_number == 1
    finally:
        assert restarted.terminate() == 0


def test_seeding_commits_every_call_valid_with_one_event_each_and_devnet_serves_the_chain(tmp_path: Path) -> None:
    from fabric_client.devnet import seed

    assert seed.main(["--data-dir", str(tmp_path), "--users", "20", "--transfers", "60", "--block-size", "25"]) == 0
    with DevnetServer(tmp_path, port=0) as devnet, devnet.connect() as gateway:
        network = gateway.network(devnet.channel)
        height = network.chain_info().height
        codes = [code for block in range(1, height) for _, code in devnet.ledger.transactions(block)]
        assert len(codes) == 80 and set(codes) == {0}
        with network.chaincode_events("gxcc", start_block=0, timeout=5) as stream:
            events = [next(stream) for _ in range(80)]
        assert [e.event_name for e in events].count("UserCreated") == 20
        total = sum(int(network.contract("gxcc", "TokenomicsContract").evaluate("GetBalance", f"seed{n:028d}"))
                    for n in range(20))
        fees = sum(int(json.loads(e.payload).get("fee", 0)) for e in events)
        assert total + fees == 20 * 500_000_000  # supply is conserved: balances + fees = genesis grants


def test_seeding_a_running_devnet_refuses_a_call_the_chaincode_rejects(tmp_path: Path) -> None:
    from fabric_client.devnet.server import EndorsementRefused

    with DevnetServer(tmp_path, port=0, block_timeout=0.05) as devnet:
        args = new_user_args()
        devnet.seed([("IdentityContract:CreateUser", args)])
        with pytest.raises(EndorsementRefused, match=r"\[USER_EXISTS\]"):
            devnet.seed([("IdentityContract:CreateUser", args)])
