"""The GX contract (docs/CHAINCODE.md) in Python, for devnet.

``invoke(stub)`` dispatches ``Contract:Function`` (or a bare function name, to the default contract, as the
Node contract API does) and returns a :class:`~fabric_client.devnet.shim.Response`. Failures are status 500 with
``[CODE] message``; the conformance trace ``vectors/chaincode-trace.json`` pins outcomes, codes, results and
events. World state keys: ``user:<id>`` (JSON profile and wallet), ``bio:<hash>`` (owner id) and
``idem:<key>`` (the original transfer payload).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fabric_client.devnet.shim import Response, Stub, error, success

GENESIS_POOL = "SYSTEM_GENESIS_POOL"
GENESIS_AMOUNT = 500_000_000  # 500 GX in qirat
GX = 1_000_000

_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BIOMETRIC = re.compile(r"[0-9a-f]{64}")
_NATIONALITY = re.compile(r"[A-Z]{2}")
_AGE = re.compile(r"0|[1-9][0-9]{0,2}")
_AMOUNT = re.compile(r"[1-9][0-9]*")


class ChaincodeError(Exception):
    """A business failure: becomes status 500 ``[code] message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")


def _invalid(message: str) -> ChaincodeError:
    return ChaincodeError("INVALID_ARGUMENT", message)


def _expect(params: list[str], names: tuple[str, ...]) -> None:
    if len(params) != len(names):
        raise _invalid(f"expected {len(names)} arguments ({', '.join(names)}), got {len(params)}")


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _user_key(user_id: str) -> str:
    return f"user:{user_id}"


def _get_user(stub: Stub, user_id: str) -> dict[str, Any]:
    raw = stub.get_state(_user_key(user_id)) if _USER_ID.fullmatch(user_id) else None
    if raw is None:
        raise ChaincodeError("USER_NOT_FOUND", f"user {user_id} not found")
    return json.loads(raw)


def _put_user(stub: Stub, user_id: str, user: dict[str, Any]) -> None:
    stub.put_state(_user_key(user_id), _json(user))


def _emit(stub: Stub, name: str, payload: dict[str, Any]) -> Response:
    """Every submitted function returns its event payload as the transaction result."""
    data = _json(payload)
    stub.set_event(name, data)
    return success(data)


def create_user(stub: Stub, params: list[str]) -> Response:
    _expect(params, ("userID", "biometricHash", "nationality", "age"))
    user_id, biometric_hash, nationality, age = params
    if user_id == GENESIS_POOL:
        raise _invalid(f"userID {GENESIS_POOL} is reserved")
    if not _USER_ID.fullmatch(user_id):
        raise _invalid("userID must be 1-64 characters from [A-Za-z0-9_-]")
    if not _BIOMETRIC.fullmatch(biometric_hash):
        raise _invalid("biometricHash must be 64 lowercase hex characters")
    if not _NATIONALITY.fullmatch(nationality):
        raise _invalid("nationality must be an ISO 3166-1 alpha-2 code in upper case")
    if not _AGE.fullmatch(age) or int(age) > 150:
        raise _invalid("age must be an integer 0-150")
    if stub.get_state(_user_key(user_id)) is not None:
        raise ChaincodeError("USER_EXISTS", f"user {user_id} already exists")
    bio_key = f"bio:{biometric_hash}"
    if stub.get_state(bio_key) is not None:
        raise ChaincodeError("BIOMETRIC_EXISTS", "biometric hash is already registered to another user")
    # The genesis pool has no balance: nothing is debited, so concurrent creations never conflict on it.
    user = {
        "biometricHash": biometric_hash,
        "nationality": nationality,
        "age": int(age),
        "balance": GENESIS_AMOUNT,
        "frozen": False,
    }
    _put_user(stub, user_id, user)
    stub.put_state(bio_key, user_id.encode("utf-8"))
    return _emit(stub, "UserCreated", {
        "v": 1,
        "userId": user_id,
        "nationality": nationality,
        "genesisAmount": str(GENESIS_AMOUNT),
        "balance": str(GENESIS_AMOUNT),
    })


def transfer_fee(amount: int, same_nationality: bool) -> int:
    """Fee in qirat, rounded down: 15 bps cross-border, else 0 below 3 GX, 5 bps up to 100 GX, 10 bps above."""
    if not same_nationality:
        bps = 15
    elif amount < 3 * GX:
        bps = 0
    elif amount <= 100 * GX:
        bps = 5
    else:
        bps = 10
    return amount * bps // 10_000


def transfer_with_fees(stub: Stub, params: list[str]) -> Response:
    _expect(params, ("fromID", "toID", "amount", "txType", "remark", "idempotencyKey"))
    from_id, to_id, amount_text, tx_type, remark, idempotency_key = params
    if not _AMOUNT.fullmatch(amount_text):
        raise _invalid("amount must be an integer >= 1 in qirat, as a decimal string")
    if tx_type not in ("", "P2P"):
        raise _invalid('txType must be "" or P2P')
    if len(remark) > 140:
        raise _invalid("remark must be at most 140 characters")
    if len(idempotency_key) > 128:
        raise _invalid("idempotencyKey must be at most 128 characters")
    idem_key = f"idem:{idempotency_key}"
    if idempotency_key:
        original = stub.get_state(idem_key)
        if original is not None:
            return _emit(stub, "TransferWithFeesCompleted", {**json.loads(original), "replayed": True})
    sender = _get_user(stub, from_id)
    recipient = _get_user(stub, to_id)
    if from_id == to_id:
        raise ChaincodeError("SELF_TRANSFER", "sender and receiver are the same user")
    for user_id, user in ((from_id, sender), (to_id, recipient)):
        if user["frozen"]:
            raise ChaincodeError("WALLET_FROZEN", f"wallet of user {user_id} is frozen")
    amount = int(amount_text)
    fee = transfer_fee(amount, sender["nationality"] == recipient["nationality"])
    if sender["balance"] < amount + fee:
        raise ChaincodeError(
            "INSUFFICIENT_FUNDS",
            f"balance {sender['balance']} of user {from_id} is less than amount {amount} + fee {fee}",
        )
    sender["balance"] -= amount + fee  # the fee is credited to no one
    recipient["balance"] += amount
    _put_user(stub, from_id, sender)
    _put_user(stub, to_id, recipient)
    payload = {
        "v": 1,
        "fromId": from_id,
        "toId": to_id,
        "amount": str(amount),
        "fee": str(fee),
        "netReceived": str(amount),
        "remark": remark,
        "idempotencyKey": idempotency_key,
        "fromBalance": str(sender["balance"]),
        "toBalance": str(recipient["balance"]),
        "replayed": False,
    }
    if idempotency_key:
        stub.put_state(idem_key, _json(payload))
    return _emit(stub, "TransferWithFeesCompleted", payload)


def freeze_wallet(stub: Stub, params: list[str]) -> Response:
    _expect(params, ("userID", "reason"))
    user_id, reason = params
    if not 1 <= len(reason) <= 140:
        raise _invalid("reason must be 1-140 characters")
    user = _get_user(stub, user_id)
    user["frozen"] = True
    _put_user(stub, user_id, user)
    return _emit(stub, "WalletFrozen", {"v": 1, "userId": user_id, "reason": reason})


def unfreeze_wallet(stub: Stub, params: list[str]) -> Response:
    _expect(params, ("userID",))
    (user_id,) = params
    user = _get_user(stub, user_id)
    user["frozen"] = False
    _put_user(stub, user_id, user)
    return _emit(stub, "WalletUnfrozen", {"v": 1, "userId": user_id})


def get_balance(stub: Stub, params: list[str]) -> Response:
    _expect(params, ("userID",))
    return success(str(_get_user(stub, params[0])["balance"]).encode("ascii"))


Function = Callable[[Stub, list[str]], Response]

CONTRACTS: dict[str, dict[str, Function]] = {
    "IdentityContract": {"CreateUser": create_user},
    "TokenomicsContract": {
        "TransferWithFees": transfer_with_fees,
        "FreezeWallet": freeze_wallet,
        "UnfreezeWallet": unfreeze_wallet,
        "GetBalance": get_balance,
    },
}
DEFAULT_CONTRACT = "IdentityContract"


def invoke(stub: Stub) -> Response:
    """Run the function named by ``args[0]``; never raises for business or argument errors."""
    contract_name, _, function_name = stub.function.rpartition(":")
    contract = CONTRACTS.get(contract_name or DEFAULT_CONTRACT)
    if contract is None:
        return error(f"Error: Contract name is not known: {contract_name}")
    function = contract.get(function_name)
    if function is None:
        return error(f"Error: You've asked to invoke a function that does not exist: {function_name}")
    try:
        return function(stub, stub.parameters)
    except UnicodeDecodeError:
        return error("[INVALID_ARGUMENT] every argument must be a UTF-8 string")
    except ChaincodeError as exc:
        return error(str(exc))
