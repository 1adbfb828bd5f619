"""Factories for projector tests: local users and hand-made chain events (same shapes as CHAINCODE.md)."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
from typing import Any

import pytest

from fabric_client.events import ChaincodeEvent, ChaincodeEventBlock

_tx_counter = itertools.count()


@pytest.fixture
def make_user():
    from identity.models import ProfileStatus, User, UserProfile

    def make(email: str | None = None, *, status: str = ProfileStatus.APPROVED_PENDING_ONCHAIN,
             nationality: str = "NG", is_staff: bool = False):
        n = next(_tx_counter)
        user = User.objects.create_user(email or f"user{n}@example.com", None, is_staff=is_staff)
        UserProfile.objects.create(user=user, first_name="Ada", last_name=f"User{n}",
                                   date_of_birth=datetime.date(1990, 1, 1), nationality=nationality, status=status)
        return user

    return make


def tx_id() -> str:
    return hashlib.sha256(f"tx-{next(_tx_counter)}".encode()).hexdigest()


def event(name: str, payload: dict[str, Any] | bytes, *, block: int = 0, tx: str | None = None) -> ChaincodeEvent:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return ChaincodeEvent(block, tx or tx_id(), "gxcc", name, data)


def block(number: int, *events: ChaincodeEvent) -> ChaincodeEventBlock:
    return ChaincodeEventBlock(number, tuple(
        ChaincodeEvent(number, e.transaction_id, e.chaincode_name, e.event_name, e.payload) for e in events))


def user_created(user_id: str, balance: int = 500_000_000) -> ChaincodeEvent:
    return event("UserCreated", {"v": 1, "userId": user_id, "nationality": "NG",
                                 "genesisAmount": "500000000", "balance": str(balance)})


def transfer(from_id: str, to_id: str, amount: int, fee: int, from_balance: int, to_balance: int, *,
             remark: str = "rent", key: str = "", replayed: bool = False, tx: str | None = None) -> ChaincodeEvent:
    return event("TransferWithFeesCompleted", {
        "v": 1, "fromId": from_id, "toId": to_id, "amount": str(amount), "fee": str(fee),
        "netReceived": str(amount), "remark": remark, "idempotencyKey": key, "fromBalance": str(from_balance),
        "toBalance": str(to_balance), "replayed": replayed}, tx=tx)


def frozen(user_id: str, reason: str = "suspicious activity") -> ChaincodeEvent:
    return event("WalletFrozen", {"v": 1, "userId": user_id, "reason": reason})


def unfrozen(user_id: str) -> ChaincodeEvent:
    return event("WalletUnfrozen", {"v": 1, "userId": user_id})
