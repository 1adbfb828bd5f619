"""The retry verdict and parsed fields of typed errors follow docs/FABRIC_GATEWAY.md §4."""

from __future__ import annotations

import grpc
import pytest

from fabric_client import (
    CommitError,
    CommitStatusError,
    EndorseError,
    ErrorDetail,
    EvaluateError,
    GatewayError,
    SubmitError,
)

C = grpc.StatusCode
PEER = "peer0:7051"


def detail(message: str) -> tuple[ErrorDetail, ...]:
    return (ErrorDetail(PEER, "Org1MSP", message),)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (EndorseError("x", code=C.UNAVAILABLE), True),
        (EndorseError("x", code=C.DEADLINE_EXCEEDED), True),
        (EndorseError("failed to endorse", code=C.ABORTED, details=detail("error in simulation: connection refused")),
         True),
        (EndorseError("failed to endorse", code=C.ABORTED,
                      details=detail("chaincode response 500, [USER_EXISTS] user u already exists")), False),
        (EndorseError("failed to endorse", code=C.ABORTED,
                      details=detail("error validating proposal: access denied: channel [c] creator org [X]")), False),
        (EndorseError("failed to endorse", code=C.ABORTED,
                      details=detail("duplicate transaction found [ab]. Creator [0a]")), False),
        (EndorseError("no combination of peers", code=C.FAILED_PRECONDITION), False),
        (EvaluateError("evaluate call to endorser returned error: chaincode response 500, [X] y", code=C.UNKNOWN),
         False),
        (EvaluateError("too many requests for /gateway.Gateway, exceeding concurrency limit (500)", code=C.UNKNOWN),
         True),
        (SubmitError("received unsuccessful response from orderer: status=FORBIDDEN", code=C.ABORTED), False),
        (SubmitError("no orderers could successfully process transaction", code=C.UNAVAILABLE), True),
        (SubmitError("x", code=C.DEADLINE_EXCEEDED), True),
        (CommitStatusError("context deadline exceeded", code=C.DEADLINE_EXCEEDED), True),
        (CommitStatusError("policy", code=C.PERMISSION_DENIED), False),
        # A peer shutting down drops calls in flight as CANCELLED (this client never cancels unary calls).
        (EndorseError("CANCELLED", code=C.CANCELLED), True),
        (SubmitError("CANCELLED", code=C.CANCELLED), True),
        (CommitStatusError("CANCELLED", code=C.CANCELLED), True),
        (GatewayError("invalid", code=C.INVALID_ARGUMENT), False),
    ],
)
def test_the_retry_verdict_follows_the_error_model(error: GatewayError, retryable: bool) -> None:
    assert error.retryable is retryable


def test_a_chaincode_error_code_is_parsed_from_the_detail_message() -> None:
    error = EndorseError(
        "failed to endorse transaction, see attached details for more info",
        code=C.ABORTED,
        transaction_id="t1",
        details=detail("chaincode response 500, [INSUFFICIENT_FUNDS] balance 1 of user u is less than 2 + 0"),
    )
    assert error.chaincode_code == "INSUFFICIENT_FUNDS" and error.chaincode_status == 500
    assert error.transaction_id == "t1"
    assert "INSUFFICIENT_FUNDS" in str(error) and PEER in str(error)


def test_a_duplicate_transaction_is_flagged_so_the_caller_asks_for_its_commit_status() -> None:
    error = EndorseError("failed", code=C.ABORTED, details=detail("duplicate transaction found [ab]. Creator [0a]"))
    assert error.duplicate_transaction and not error.retryable and error.chaincode_code is None


def test_a_stale_proposal_is_flagged_because_resending_it_can_never_succeed() -> None:
    error = EndorseError(
        "failed", code=C.UNAVAILABLE, details=detail("request unauthorized due to incorrect timestamp 2026-01-01")
    )
    assert error.stale_proposal and error.retryable  # retry with a freshly built proposal


@pytest.mark.parametrize(("code", "name", "retryable"), [(11, "MVCC_READ_CONFLICT", True),
                                                         (12, "PHANTOM_READ_CONFLICT", True),
                                                         (10, "ENDORSEMENT_POLICY_FAILURE", False),
                                                         (9, "DUPLICATE_TXID", False)])
def test_a_commit_error_names_its_validation_code(code: int, name: str, retryable: bool) -> None:
    error = CommitError("t1", code, 7)
    assert error.validation_code_name == name and error.block_number == 7
    assert error.retryable is retryable
    assert str(error) == f"transaction t1 failed to commit with status code {code} ({name})"
