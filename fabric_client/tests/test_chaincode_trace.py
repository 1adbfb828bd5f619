"""Devnet's GX contract replays the conformance trace recorded on a real Fabric network (38 steps)."""

from __future__ import annotations

import json

import pytest

from fabric_client import GatewayError, Network
from fabric_client.tests.conftest import load_vector

STEPS = load_vector("chaincode-trace.json")["steps"]


def test_the_trace_has_all_38_steps() -> None:
    assert len(STEPS) == 38


def test_devnet_replays_every_step_with_the_same_outcome_code_result_and_event(network: Network) -> None:
    contract = network.contract("gxcc")
    start = network.chain_info().height  # an explicit start: no race with the first commit
    with network.chaincode_events("gxcc", start_block=start, timeout=60) as events:
        for number, step in enumerate(STEPS, 1):
            observed = _run(contract, step)
            if step["outcome"] == "ok" and step["call"] == "submit":
                event = next(events)
                assert event.transaction_id == observed["tx_id"], number
                observed["event"] = {"name": event.event_name, "payload": json.loads(event.payload)}
            assert observed["outcome"] == step["outcome"], (number, observed)
            if step["outcome"] == "ok":
                assert observed["result"] == step["result"], number
                if step["call"] == "submit":
                    assert observed["event"] == step["event"], number
            else:
                assert observed["grpc_code"] == step["grpc_code"], number
                assert observed["chaincode_code"] == step["chaincode_code"], number
                code_prefix = step["message"].split("] ", 1)[0] + "] "
                assert observed["message"].startswith(code_prefix), (number, observed["message"])


def _run(contract, step: dict) -> dict:
    try:
        if step["call"] == "evaluate":
            return {"outcome": "ok", "result": contract.evaluate(step["transaction_name"], *step["args"]).decode()}
        transaction = contract.new_proposal(step["transaction_name"], step["args"]).endorse()
        status = transaction.submit().status(timeout=5)
        assert status.successful, status
        return {"outcome": "ok", "result": json.loads(transaction.result), "tx_id": transaction.transaction_id}
    except GatewayError as error:
        assert error.details, error
        return {
            "outcome": "error",
            "grpc_code": error.code.name if error.code else None,
            "chaincode_code": error.chaincode_code,
            "message": error.details[0].message,
            "retryable": error.retryable,
        }


@pytest.mark.parametrize(
    ("amount", "same_nationality", "fee"),
    [
        (2_999_999, True, 0),
        (3_000_000, True, 1_500),
        (100_000_000, True, 50_000),
        (100_000_001, True, 100_000),
        (999, False, 1),
        (1_000_000, False, 1_500),
    ],
)
def test_the_fee_schedule_rounds_down_at_each_boundary(amount: int, same_nationality: bool, fee: int) -> None:
    from fabric_client.devnet.chaincode import transfer_fee

    assert transfer_fee(amount, same_nationality) == fee
