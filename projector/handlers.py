"""One function per chaincode event name (docs/CHAINCODE.md, "What the backend does with each event").

A handler validates its event's payload and records the read-model effect on a :class:`BlockEffects`; it
never touches the database. :func:`projector.services.apply_blocks` folds every event of the blocks it applies
into ``BlockEffects`` and writes them with a handful of bulk statements in the same transaction as the checkpoint,
which is what makes ≥ 20,000 events/s possible (no round trip per event).

Effects are idempotent by construction: balances and flags are *set* from the event (never incremented), and
``Transaction`` rows are keyed by (tx id, kind, wallet), so applying a block twice changes nothing.

A payload that is not a JSON object, lacks a required field, or has a field of the wrong type raises
:class:`MalformedEvent`: the projector stops advancing at that event (it never skips it). Unknown fields are
ignored, as the contract asks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fabric_client.events import ChaincodeEvent

_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Amounts are stored in BIGINT columns: anything larger cannot be projected faithfully.
_MAX_QIRAT = 2**63 - 1
# User ids already validated (the same few thousand users recur in every block): a set lookup instead of a
# regex per field. Bounded: cleared when it grows past _KNOWN_IDS_MAX.
_KNOWN_IDS: set[str] = set()
_KNOWN_IDS_MAX = 200_000
_decode_json = json.JSONDecoder().decode


class MalformedEvent(ValueError):
    """The event cannot be interpreted; the projector must stop at it."""

    def __init__(self, event: ChaincodeEvent, reason: str) -> None:
        super().__init__(f"malformed {event.event_name} event in tx {event.transaction_id} "
                         f"(block {event.block_number}): {reason}")
        self.event = event
        self.reason = reason


@dataclass
class WalletChange:
    """The state of one wallet after the block's events; ``None`` = not changed by this block."""

    balance: int | None = None
    frozen: bool | None = None
    frozen_reason: str | None = None


@dataclass
class ProfileChange:
    status: str
    registered: bool = False  # set onchain_registered_at to the block time


class TransactionRow(NamedTuple):
    """One ``Transaction`` row to write (a tuple: cheaper to build than a frozen dataclass, 3 per transfer)."""

    user_id: str  # on-chain id of the wallet the row belongs to
    kind: str
    amount: int
    fee: int
    counterparty_id: str
    remark: str
    tx_id: str


@dataclass
class BlockEffects:
    """Everything one block does to the read models, folded in event order (the last write wins)."""

    block_number: int
    wallets: dict[str, WalletChange] = field(default_factory=dict)
    profiles: dict[str, ProfileChange] = field(default_factory=dict)
    transactions: list[TransactionRow] = field(default_factory=list)
    applied: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def wallet(self, user_id: str) -> WalletChange:
        change = self.wallets.get(user_id)
        if change is None:
            change = self.wallets[user_id] = WalletChange()
        return change


# -- payload validation ------------------------------------------------------------------------------------
def decode(event: ChaincodeEvent) -> dict[str, Any]:
    try:
        # The contract says UTF-8: decode strictly, then parse the str (skips json.loads' encoding sniffing).
        payload = _decode_json(event.payload.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEvent(event, f"payload is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise MalformedEvent(event, "payload is not a JSON object")
    version = payload.get("v")
    if type(version) is not int or version != 1:
        raise MalformedEvent(event, f"unsupported payload version v={version!r} (expected 1)")
    return payload


def _str(event: ChaincodeEvent, payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if type(value) is str:  # the hot path; a str subclass cannot come out of json
        return value
    if name not in payload:
        raise MalformedEvent(event, f"missing field {name!r}")
    raise MalformedEvent(event, f"field {name!r} must be a string, got {type(value).__name__}")


def _user_id(event: ChaincodeEvent, payload: dict[str, Any], name: str) -> str:
    value = _str(event, payload, name)
    if value in _KNOWN_IDS:
        return value
    if not _USER_ID.fullmatch(value):
        raise MalformedEvent(event, f"field {name!r} is not a user id: {value[:80]!r}")
    if len(_KNOWN_IDS) >= _KNOWN_IDS_MAX:
        _KNOWN_IDS.clear()
    _KNOWN_IDS.add(value)
    return value


def _qirat(event: ChaincodeEvent, payload: dict[str, Any], name: str) -> int:
    """A decimal string of qirat: ``0`` or ``[1-9][0-9]*`` (ASCII digits only), at most ``_MAX_QIRAT``."""
    value = _str(event, payload, name)
    # isascii() + isdigit(): exactly [0-9]+ (isdigit alone accepts other scripts' digits and superscripts).
    if (value.isdigit() and value.isascii() and (value[0] != "0" or len(value) == 1) and len(value) <= 19
            and (amount := int(value)) <= _MAX_QIRAT):
        return amount
    raise MalformedEvent(event, f"field {name!r} is not an amount in qirat: {value[:40]!r}")


def _bool(event: ChaincodeEvent, payload: dict[str, Any], name: str) -> bool:
    if name not in payload:
        raise MalformedEvent(event, f"missing field {name!r}")
    value = payload[name]
    if not isinstance(value, bool):
        raise MalformedEvent(event, f"field {name!r} must be a boolean, got {type(value).__name__}")
    return value


# -- handlers ----------------------------------------------------------------------------------------------
def user_created(effects: BlockEffects, event: ChaincodeEvent, payload: dict[str, Any]) -> None:
    """``UserCreated``: profile ACTIVE (registered at block time), wallet with ``balance``, one GENESIS row."""
    user_id = _user_id(event, payload, "userId")
    _str(event, payload, "nationality")
    genesis = _qirat(event, payload, "genesisAmount")
    balance = _qirat(event, payload, "balance")
    wallet = effects.wallet(user_id)
    wallet.balance = balance
    wallet.frozen = False
    wallet.frozen_reason = ""
    effects.profiles[user_id] = ProfileChange("ACTIVE", registered=True)
    effects.transactions.append(TransactionRow(user_id, "GENESIS", genesis, 0, "SYSTEM_GENESIS_POOL", "",
                                               event.transaction_id))


def transfer_with_fees_completed(effects: BlockEffects, event: ChaincodeEvent, payload: dict[str, Any]) -> None:
    """``TransferWithFeesCompleted``: balances from the event, rows SENT, RECEIVED (and FEE when fee > 0).

    A replay (``"replayed": true``) carries the *original* payload and balances; it changes nothing.
    """
    from_id = _user_id(event, payload, "fromId")
    to_id = _user_id(event, payload, "toId")
    amount = _qirat(event, payload, "amount")
    fee = _qirat(event, payload, "fee")
    net = _qirat(event, payload, "netReceived")
    remark = _str(event, payload, "remark")
    _str(event, payload, "idempotencyKey")
    from_balance = _qirat(event, payload, "fromBalance")
    to_balance = _qirat(event, payload, "toBalance")
    if _bool(event, payload, "replayed"):
        return
    if len(remark) > 140:
        raise MalformedEvent(event, "field 'remark' is longer than 140 characters")
    effects.wallet(from_id).balance = from_balance
    effects.wallet(to_id).balance = to_balance
    tx_id = event.transaction_id
    effects.transactions.append(TransactionRow(from_id, "SENT", amount, fee, to_id, remark, tx_id))
    effects.transactions.append(TransactionRow(to_id, "RECEIVED", net, 0, from_id, remark, tx_id))
    if fee > 0:
        effects.transactions.append(TransactionRow(from_id, "FEE", fee, 0, "", remark, tx_id))


def wallet_frozen(effects: BlockEffects, event: ChaincodeEvent, payload: dict[str, Any]) -> None:
    """``WalletFrozen``: wallet frozen with the reason, profile FROZEN."""
    user_id = _user_id(event, payload, "userId")
    reason = _str(event, payload, "reason")
    wallet = effects.wallet(user_id)
    wallet.frozen = True
    wallet.frozen_reason = reason[:140]
    effects.profiles[user_id] = ProfileChange("FROZEN")


def wallet_unfrozen(effects: BlockEffects, event: ChaincodeEvent, payload: dict[str, Any]) -> None:
    """``WalletUnfrozen``: wallet active again, profile ACTIVE."""
    user_id = _user_id(event, payload, "userId")
    wallet = effects.wallet(user_id)
    wallet.frozen = False
    wallet.frozen_reason = ""
    effects.profiles[user_id] = ProfileChange("ACTIVE")


Handler = Callable[[BlockEffects, ChaincodeEvent, dict[str, Any]], None]

HANDLERS: dict[str, Handler] = {
    "UserCreated": user_created,
    "TransferWithFeesCompleted": transfer_with_fees_completed,
    "WalletFrozen": wallet_frozen,
    "WalletUnfrozen": wallet_unfrozen,
}


def fold_event(effects: BlockEffects, event: ChaincodeEvent) -> None:
    """Adds one event's effect; unknown names are counted as skipped. Raises :class:`MalformedEvent`."""
    handler = HANDLERS.get(event.event_name)
    if handler is None:
        effects.skipped[event.event_name] = effects.skipped.get(event.event_name, 0) + 1
        return
    handler(effects, event, decode(event))
    effects.applied += 1
