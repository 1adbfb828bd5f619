"""Writes of the money side: transfers and wallet freezes, each one OutboxCommand written in one transaction.

Why here: a transfer is checked against the read models the projector keeps (``Wallet``, the profiles' status
as the chain last said it), and its effect comes back through the projector; the write side of the outbox
stays generic. The chaincode remains the authority: these checks only spare a user a command that would
certainly fail; whatever still fails on chain lands on the command as FAILED with the chaincode's ``[CODE]``.

Fees follow docs/CHAINCODE.md exactly (:func:`transfer_fee_qirat`), so the 409 ``insufficient_funds`` answer and
the fee quoted in a 202 are the fee the chaincode will take.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.db.models import Q

from gxbackend.exceptions import Conflict, Forbidden, NotFound, Unprocessable, ValidationFailed
from identity.emails import email_key
from identity.models import ProfileStatus, User, UserProfile
from outbox.models import UNFINISHED, CommandStatus, CommandType, OutboxCommand
from outbox.services import outbox_enqueue
from projector.models import Checkpoint, Wallet
from projector.selectors import CHECKPOINT_NAME, QIRAT_PER_GX, gx

logger = logging.getLogger("gx.money")

#: Largest amount a wallet row can hold (BIGINT); anything above cannot be a real balance.
MAX_QIRAT = 2**63 - 1
REMARK_MAX = 140
FREEZE_REASON_MAX = 140

# --- amounts and the fee -----------------------------------------------------------------------------------
_GX_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]{1,6})?$")
_QIRAT = re.compile(r"^[1-9][0-9]*$")

SMALL_LIMIT_QIRAT = 3 * QIRAT_PER_GX  # below: no fee (same nationality)
MEDIUM_LIMIT_QIRAT = 100 * QIRAT_PER_GX  # up to and including: 5 bps; above: 10 bps
CROSS_BORDER_BPS = 15


def transfer_fee_qirat(*, amount_qirat: int, cross_border: bool) -> int:
    """The fee TransferWithFees takes from the sender on top of ``amount_qirat`` (docs/CHAINCODE.md).

    Integer division, rounded down: users of different nationalities pay 15 bps whatever the amount;
    otherwise amount < 3 GX → 0, 3 GX ≤ amount ≤ 100 GX → 5 bps, amount > 100 GX → 10 bps.
    """
    if amount_qirat < 1:
        raise ValueError("amount_qirat must be at least 1")
    if cross_border:
        bps = CROSS_BORDER_BPS
    elif amount_qirat < SMALL_LIMIT_QIRAT:
        bps = 0
    elif amount_qirat <= MEDIUM_LIMIT_QIRAT:
        bps = 5
    else:
        bps = 10
    return amount_qirat * bps // 10_000


def parse_gx_amount(text: str) -> int:
    """A GX decimal string (``"12.5"``, at most six decimals, > 0) → qirat. Raises ValueError with the reason."""
    if not isinstance(text, str) or not _GX_DECIMAL.fullmatch(text):
        raise ValueError("Must be a GX amount as a decimal string with at most 6 decimals, e.g. \"12.5\".")
    try:
        qirat = int(Decimal(text) * QIRAT_PER_GX)  # exact: at most 6 decimals, Decimal has no rounding here
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid decimals
        raise ValueError("Must be a decimal number.") from exc
    return _checked_qirat(qirat)


def parse_qirat_amount(text: str) -> int:
    """An integer string of qirat (``"12500000"``, no sign, no leading zero, ≥ 1) → int."""
    if not isinstance(text, str) or not _QIRAT.fullmatch(text):
        raise ValueError("Must be a whole number of qirat (at least 1) as a string, e.g. \"12500000\".")
    return _checked_qirat(int(text))


def _checked_qirat(qirat: int) -> int:
    if qirat < 1:
        raise ValueError("Must be greater than zero.")
    if qirat > MAX_QIRAT:
        raise ValueError(f"Must be at most {MAX_QIRAT} qirat.")
    return qirat


# --- the chaincode's idempotencyKey ------------------------------------------------------------------------
def chain_idempotency_key(*, sender_onchain_id: str, client_key: str | None) -> str:
    """The ``idempotencyKey`` of TransferWithFees (≤ 128 characters), also the outbox row's key.

    The chaincode's keys form one namespace for everyone, and a used key *replays* the original transfer
    whatever the new arguments: a client's key is therefore prefixed with the sender's on-chain id, so one
    user's key can never replay (or block) another user's transfer. A long client key is hashed to fit.
    Without a client key a random one is made: every command still carries a key, so a submitter retry after
    a crash can never move the money twice.
    """
    if client_key is None:
        return f"{sender_onchain_id}:auto:{uuid.uuid4().hex}"
    room = 128 - len(sender_onchain_id) - 1
    if len(client_key) > room:
        return f"{sender_onchain_id}:sha256:{hashlib.sha256(client_key.encode()).hexdigest()}"
    return f"{sender_onchain_id}:{client_key}"


# --- transfers ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransferAccepted:
    command: OutboxCommand
    amount_qirat: int
    fee_qirat: int
    replayed: bool = False


def _sender_profile(sender: User) -> UserProfile:
    profile = UserProfile.objects.select_related("user").filter(user_id=sender.pk).first()
    if profile is None:
        raise Forbidden("Only users with a profile and a wallet can send transfers.", code="no_wallet")
    return profile


def _check_sender_can_send(profile: UserProfile) -> None:
    if profile.status == ProfileStatus.FROZEN:
        raise Conflict("Your wallet is frozen; transfers from it are refused.", code="wallet_frozen")
    if profile.status != ProfileStatus.ACTIVE:
        raise Conflict(f"Your account is not active on chain yet (status {profile.status}); transfers need an "
                       "approved KYC and a wallet.", code="sender_not_active")


def _recipient_profile(*, to_user_id: uuid.UUID | None, to_email: str | None) -> UserProfile:
    rows = UserProfile.objects.select_related("user")
    if to_user_id is not None:
        profile, field = rows.filter(user_id=to_user_id).first(), "to_user_id"
    else:
        profile, field = rows.filter(user__email_canonical=email_key(to_email or "")).first(), "to_email"
    if profile is None:
        message = "No user with this id." if field == "to_user_id" else "No user with this email."
        raise NotFound("The recipient does not exist.", code="recipient_not_found", fields={field: [message]})
    return profile


def _replay_or_reject(existing: OutboxCommand, *, sender: UserProfile, to_user_id: uuid.UUID | None,
                      to_email: str | None, amount_qirat: int, remark: str) -> TransferAccepted:
    """A command with this key exists (the API's idempotency record expired or was lost): the same request
    gets that command back, a different one 422 — as the chaincode itself would replay the original."""
    payload = existing.payload
    try:
        recipient_id = _recipient_profile(to_user_id=to_user_id, to_email=to_email).onchain_user_id
    except NotFound:
        recipient_id = None
    same = (existing.command_type == CommandType.TRANSFER and payload.get("from_user_id") == sender.onchain_user_id
            and payload.get("to_user_id") == recipient_id and payload.get("amount_qirat") == str(amount_qirat)
            and payload.get("remark", "") == remark)
    if not same:
        raise Unprocessable("This Idempotency-Key was already used for a different transfer.",
                            code="idempotency_key_reused")
    result = existing.result if isinstance(existing.result, dict) else {}
    fee = int(result["fee"]) if "fee" in result else _quote_fee(sender, payload["to_user_id"], amount_qirat)
    return TransferAccepted(command=existing, amount_qirat=amount_qirat, fee_qirat=fee, replayed=True)


def _quote_fee(sender: UserProfile, recipient_onchain_id: str, amount_qirat: int) -> int:
    nationality = UserProfile.objects.filter(user_id=uuid.UUID(hex=recipient_onchain_id)) \
        .values_list("nationality", flat=True).first()
    return _fee_between(sender, nationality, amount_qirat)


def _fee_between(sender: UserProfile, recipient_nationality: str | None, amount_qirat: int) -> int:
    cross = recipient_nationality is not None and recipient_nationality != sender.nationality
    return transfer_fee_qirat(amount_qirat=amount_qirat, cross_border=cross)


def held_by_transfers_in_flight(sender: UserProfile) -> tuple[int, int]:
    """``(qirat, count)`` of the sender's transfers the projected balance does not show yet, each holding its
    amount + fee: queued or on their way (PENDING, SUBMITTED), or committed in a block the projector has not
    applied yet (at or after its checkpoint). Failed ones hold nothing; a projector behind makes this larger,
    never smaller (incoming transfers it has not applied are not counted either).

    Three queries whatever the number of transfers (checkpoint, transfers, their recipients' nationalities):
    the transfer request runs this while it holds the sender's wallet row locked."""
    projected_until = Checkpoint.objects.filter(name=CHECKPOINT_NAME).values_list("block_number", flat=True).first()
    rows = list(OutboxCommand.objects.filter(aggregate_id=sender.onchain_user_id, command_type=CommandType.TRANSFER)
                .filter(Q(status__in=UNFINISHED)
                        | Q(status=CommandStatus.COMMITTED, block_number__gte=projected_until or 0))
                .values_list("payload", "result"))
    # Transfers not committed yet hold the fee quoted now (the chaincode takes its fee from the recipient's
    # nationality at commit): one query for all their recipients.
    unquoted = {payload["to_user_id"] for payload, result in rows if not (isinstance(result, dict) and "fee" in result)}
    nationalities = dict(UserProfile.objects.filter(user_id__in=[uuid.UUID(hex=r) for r in unquoted])
                         .values_list("user_id", "nationality")) if unquoted else {}
    held = 0
    for payload, result in rows:
        amount = int(payload["amount_qirat"])
        if isinstance(result, dict) and "fee" in result:  # committed: the fee the chaincode took
            held += amount + int(result["fee"])
        else:
            held += amount + _fee_between(sender, nationalities.get(uuid.UUID(hex=payload["to_user_id"])), amount)
    return held, len(rows)


def transfer_request(
    *,
    sender: User,
    amount_qirat: int,
    to_user_id: uuid.UUID | None = None,
    to_email: str | None = None,
    remark: str = "",
    idempotency_key: str | None = None,
    request_id: str = "",
) -> TransferAccepted:
    """Checks a transfer as a user would expect and enqueues TRANSFER; the chain decides in the end.

    A key this sender already used returns its command first (as the chaincode replays before any check).
    Then, in the chaincode's order: the sender is ACTIVE with a wallet (403 ``no_wallet`` without a profile,
    409 ``sender_not_active`` before the chain knows them), the recipient exists (404 ``recipient_not_found``),
    is not the sender (400 ``self_transfer``), neither wallet is frozen (409 ``wallet_frozen``), the recipient
    is ACTIVE (409 ``recipient_not_active``), and amount + fee ≤ the projected balance minus what the sender's
    transfers still in flight hold (409 ``insufficient_funds``, the fee and the held amount stated). Exactly one
    of ``to_user_id`` / ``to_email``.
    """
    if (to_user_id is None) == (to_email is None):
        raise ValidationFailed("Give exactly one of to_user_id and to_email.",
                               fields={"to_user_id": ["Give exactly one of to_user_id and to_email."]})
    if len(remark) > REMARK_MAX:
        raise ValidationFailed("The remark is too long.", fields={"remark": [f"At most {REMARK_MAX} characters."]})
    try:
        amount_qirat = _checked_qirat(amount_qirat)
    except ValueError as exc:
        raise ValidationFailed("The amount is invalid.", fields={"amount_qirat": [str(exc)]}) from exc
    sender_profile = _sender_profile(sender)
    key = chain_idempotency_key(sender_onchain_id=sender_profile.onchain_user_id, client_key=idempotency_key)
    if idempotency_key is not None:
        existing = OutboxCommand.objects.filter(idempotency_key=key).first()
        if existing is not None:
            # Like the chaincode: a replay answers even if a wallet was frozen or emptied since.
            return _replay_or_reject(existing, sender=sender_profile, to_user_id=to_user_id, to_email=to_email,
                                     amount_qirat=amount_qirat, remark=remark)
    _check_sender_can_send(sender_profile)

    recipient = _recipient_profile(to_user_id=to_user_id, to_email=to_email)
    if recipient.pk == sender_profile.pk:
        field = "to_user_id" if to_user_id is not None else "to_email"
        raise ValidationFailed("You cannot send a transfer to yourself.", code="self_transfer",
                               fields={field: ["Must be another user."]})
    if recipient.status == ProfileStatus.FROZEN:
        raise Conflict("The recipient's wallet is frozen; transfers to it are refused.", code="wallet_frozen")
    if recipient.status != ProfileStatus.ACTIVE:
        raise Conflict("The recipient has no active wallet yet.", code="recipient_not_active")

    cross_border = recipient.nationality != sender_profile.nationality
    fee = transfer_fee_qirat(amount_qirat=amount_qirat, cross_border=cross_border)
    payload = {"from_user_id": sender_profile.onchain_user_id, "to_user_id": recipient.onchain_user_id,
               "amount_qirat": str(amount_qirat), "tx_type": "", "remark": remark}
    with transaction.atomic():
        # The wallet row is locked until this request commits, so one sender's transfers are checked one after
        # the other and each sees what the ones before it hold (the projector waits the few ms as well).
        wallet = Wallet.objects.select_for_update().filter(user_id=sender.pk).first()
        if wallet is None:  # ACTIVE without a wallet cannot happen (one transaction in the projector); be safe
            raise Conflict("Your wallet is not on chain yet.", code="sender_not_active")
        if wallet.frozen:
            raise Conflict("Your wallet is frozen; transfers from it are refused.", code="wallet_frozen")
        held, holding = held_by_transfers_in_flight(sender_profile)
        available = wallet.balance_qirat - held
        if amount_qirat + fee > available:
            rate = "0.15 % cross-border" if cross_border else f"{fee * 10_000 // amount_qirat / 100:g} %"
            what = (f"your balance of {gx(wallet.balance_qirat)} GX" if not holding else
                    f"your available {gx(available)} GX (balance {gx(wallet.balance_qirat)} GX, of which "
                    f"{gx(held)} GX is held by {holding} transfer{'s' if holding > 1 else ''} on "
                    f"{'their' if holding > 1 else 'its'} way to the chain)")
            raise Conflict(
                f"Insufficient funds: amount {gx(amount_qirat)} GX + fee {gx(fee)} GX ({fee} qirat, {rate}) = "
                f"{gx(amount_qirat + fee)} GX exceeds {what}.",
                code="insufficient_funds",
            )
        try:
            with transaction.atomic():
                command = outbox_enqueue(command_type=CommandType.TRANSFER,
                                         aggregate_id=sender_profile.onchain_user_id, payload=payload,
                                         idempotency_key=key, request_id=request_id, requested_by=sender)
        except IntegrityError as exc:  # the same sender's same key, committed meanwhile by a concurrent request
            raise Conflict("A transfer with this Idempotency-Key is being processed; retry later.",
                           code="idempotency_request_in_flight") from exc
    logger.info("transfer enqueued", extra={"command_id": str(command.command_id), "from_user_id": payload[
        "from_user_id"], "to_user_id": payload["to_user_id"], "amount_qirat": payload["amount_qirat"],
        "fee_qirat": str(fee)})
    return TransferAccepted(command=command, amount_qirat=amount_qirat, fee_qirat=fee)


# --- freeze / unfreeze (the admin's actions) ---------------------------------------------------------------
_WALLET_COMMANDS = (CommandType.FREEZE_WALLET, CommandType.UNFREEZE_WALLET)


def _lock_profile_for_wallet_command(user_id: uuid.UUID, expected: str, verb: str) -> UserProfile:
    profile = UserProfile.objects.select_for_update().select_related("user").filter(user_id=user_id).first()
    if profile is None:
        raise NotFound("No such user.")
    if profile.status != expected:
        raise Conflict(f"Only {expected} wallets can be {verb} (this one is {profile.status}).",
                       code="wallet_state_conflict")
    if OutboxCommand.objects.filter(aggregate_id=profile.onchain_user_id, command_type__in=_WALLET_COMMANDS,
                                    status__in=UNFINISHED).exists():
        raise Conflict("A freeze or unfreeze of this wallet is already on its way to the chain.",
                       code="wallet_command_pending")
    return profile


def wallet_freeze(*, user_id: uuid.UUID, reason: str, actor: User, request_id: str = "") -> OutboxCommand:
    """Enqueues FREEZE_WALLET for an ACTIVE profile (reason 1–140 characters), recording who asked (the row's
    ``requested_by``, a log line). The profile turns FROZEN when the projector sees ``WalletFrozen``."""
    reason = reason.strip()
    if not 1 <= len(reason) <= FREEZE_REASON_MAX:
        raise ValidationFailed("A freeze needs a reason.",
                               fields={"reason": [f"Must be 1–{FREEZE_REASON_MAX} characters."]})
    with transaction.atomic():
        profile = _lock_profile_for_wallet_command(user_id, ProfileStatus.ACTIVE, "frozen")
        command = outbox_enqueue(command_type=CommandType.FREEZE_WALLET, aggregate_id=profile.onchain_user_id,
                                 payload={"user_id": profile.onchain_user_id, "reason": reason},
                                 request_id=request_id, requested_by=actor)
    logger.info("wallet freeze requested", extra={"command_id": str(command.command_id),
                                                  "user_id": profile.onchain_user_id, "actor": actor.email,
                                                  "reason": reason, "requested_at": command.created_at.isoformat()})
    return command


def wallet_unfreeze(*, user_id: uuid.UUID, actor: User, request_id: str = "") -> OutboxCommand:
    """Enqueues UNFREEZE_WALLET for a FROZEN profile, recording who asked (``requested_by``, a log line)."""
    with transaction.atomic():
        profile = _lock_profile_for_wallet_command(user_id, ProfileStatus.FROZEN, "unfrozen")
        command = outbox_enqueue(command_type=CommandType.UNFREEZE_WALLET, aggregate_id=profile.onchain_user_id,
                                 payload={"user_id": profile.onchain_user_id}, request_id=request_id,
                                 requested_by=actor)
    logger.info("wallet unfreeze requested", extra={"command_id": str(command.command_id),
                                                    "user_id": profile.onchain_user_id, "actor": actor.email,
                                                    "requested_at": command.created_at.isoformat()})
    return command
