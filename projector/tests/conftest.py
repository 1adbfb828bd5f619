"""Factories for projector tests: local users and hand-made chain events (same shapes as docs/CHAINCODE.md)."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import time
from typing import Any

import pytest

from fabric_client.events import ChaincodeEvent, ChaincodeEventBlock
from projector.testing import ScriptedNetwork  # noqa: F401 - for the tests: from conftest import ScriptedNetwork

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


# -- devnet ------------------------------------------------------------------------------------------------
class Chain:
    """Submits GX transactions to devnet directly with fabric_client (what the outbox would do)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.gateway = server.connect()
        self.network = self.gateway.network(server.channel)
        self.identity = self.network.contract(server.chaincode, "IdentityContract")
        self.tokenomics = self.network.contract(server.chaincode, "TokenomicsContract")

    def create_user(self, user: Any, nationality: str = "NG") -> dict:
        bio = hashlib.sha256(user.pk.bytes).hexdigest()
        return json.loads(self.identity.submit("CreateUser", user.pk.hex, bio, nationality, "30"))

    def create_users(self, users: list[Any], nationality: str = "NG") -> None:
        from fabric_client.devnet.load import submit_many

        statuses = submit_many(self.identity, [
            ("CreateUser", [u.pk.hex, hashlib.sha256(u.pk.bytes).hexdigest(), nationality, "30"]) for u in users])
        assert all(s.successful for s in statuses)

    def transfer(self, sender: Any, recipient: Any, amount: int, *, key: str = "", remark: str = "rent") -> dict:
        return json.loads(self.tokenomics.submit("TransferWithFees", sender.pk.hex, recipient.pk.hex, str(amount),
                                                 "", remark, key))

    def freeze(self, user: Any, reason: str = "suspicious activity") -> None:
        self.tokenomics.submit("FreezeWallet", user.pk.hex, reason)

    def unfreeze(self, user: Any) -> None:
        self.tokenomics.submit("UnfreezeWallet", user.pk.hex)

    def height(self) -> int:
        return self.network.chain_info().height

    def close(self) -> None:
        self.gateway.close()


@pytest.fixture
def devnet(tmp_path, settings):
    """An in-process devnet with short blocks; Django's FABRIC_* settings point at it."""
    from fabric_client.devnet import DevnetServer

    server = DevnetServer(tmp_path / "devnet", port=0, block_timeout=0.05, block_size=50).start()
    for name, value in server.env().items():
        setattr(settings, name, value)
    settings.FABRIC_TLS_CA_PATH = None
    yield server
    server.stop()


@pytest.fixture
def chain(devnet):
    chain = Chain(devnet)
    yield chain
    chain.close()


@pytest.fixture
def projector(chain):
    """An in-process projector on the devnet (the unit run_projector loops over)."""
    from projector.worker import Projector

    worker = Projector(network_factory=lambda: chain.network, chaincode=chain.server.chaincode, wait_timeout=0.2)
    yield worker
    worker.close()


def catch_up(worker: Any, chain: Chain, *, timeout: float = 30.0) -> None:
    """Steps the projector until its checkpoint reaches the chain height (bounded wait, no timing asserted)."""
    from projector.services import get_checkpoint

    deadline = time.monotonic() + timeout
    height = chain.height()
    while time.monotonic() < deadline:
        worker.step()
        if get_checkpoint().block_number >= height:
            return
    raise AssertionError(f"projector did not reach height {height}: {get_checkpoint()} ({worker.last_error})")


def snapshot() -> dict[str, list]:
    """Everything the projector writes, in a comparable form."""
    from identity.models import UserProfile
    from projector.models import Transaction, Wallet

    return {
        "profiles": sorted(UserProfile.objects.values_list("user_id", "status", "onchain_registered_at")),
        "wallets": sorted(Wallet.objects.values_list("user_id", "balance_qirat", "frozen", "frozen_reason")),
        "transactions": sorted(Transaction.objects.values_list(
            "wallet_id", "kind", "amount_qirat", "fee_qirat", "counterparty_id", "remark", "tx_id", "block_number",
            "block_time")),
    }
