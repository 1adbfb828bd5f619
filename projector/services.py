"""Apply a block of chain events to the read models, and everything else that writes projector state.

:func:`apply_blocks` is what the projector's unit of work writes (docs/STYLE.md convention 11): in **one**
database transaction it locks the checkpoint row, drops events already applied, folds the rest of the given
consecutive blocks (one block live, the queued ones together when catching up) through
:mod:`projector.handlers`, writes the effects with a few bulk statements (PostgreSQL: ``unnest`` arrays, one
round trip per table, no round trip per event) and advances the checkpoint to the last block applied.
:func:`apply_block` is the same for one block. A crash anywhere before COMMIT leaves the read models and the
checkpoint exactly as they were; the blocks are read again on restart.

Checkpoint semantics are those of the Fabric SDK checkpointer: ``(block_number, transaction_id)`` where
``transaction_id`` is empty after a whole block (resume at ``block_number``) or names the last applied
transaction of ``block_number`` (resume after it), which happens only when a malformed event stopped the
projector in the middle of a block: the events before it are applied, the malformed one and everything after
wait. Lag is ``height - block_number`` blocks (newest block ``height - 1`` minus the last fully applied one).

Test-only crash hook: with ``DEBUG`` on, ``GX_PROJECTOR_CRASH_AT=<point>:<block>`` makes the process kill
itself with SIGKILL while applying that block, at ``mid_block`` (wallets written, transaction rows not yet) or
``before_commit`` (everything written including the checkpoint, COMMIT not yet sent). Production ignores it.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg import errors as psycopg_errors

from fabric_client.events import ChaincodeEvent, ChaincodeEventBlock
from gxbackend import progress
from identity.models import ProfileStatus, User, UserProfile
from projector import metrics
from projector.handlers import BlockEffects, MalformedEvent, WalletChange, fold_event
from projector.models import Checkpoint, ProjectedBlock, Transaction, Wallet
from projector.selectors import CHECKPOINT_NAME, lag_blocks

logger = logging.getLogger("projector")

CRASH_ENV = "GX_PROJECTOR_CRASH_AT"


@dataclass
class ApplyResult:
    """What :func:`apply_block` did. ``malformed`` is set when it stopped at a malformed event."""

    block_number: int
    applied: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    already_applied: bool = False
    malformed: MalformedEvent | None = None
    checkpoint: tuple[int, str] = (0, "")


def get_checkpoint(name: str = CHECKPOINT_NAME) -> Checkpoint:
    checkpoint, _ = Checkpoint.objects.get_or_create(name=name)
    return checkpoint


# -- the unit of work --------------------------------------------------------------------------------------
def apply_block(block: ChaincodeEventBlock, *, name: str = CHECKPOINT_NAME) -> ApplyResult:
    """Applies the not yet applied events of ``block`` and advances the checkpoint, in one transaction.

    Returns what was done; on a malformed event the events before it are committed with a checkpoint right
    before it, the error is stored on the checkpoint, and ``result.malformed`` is set (the caller backs off and
    retries). Any other exception rolls everything back and propagates.

    On PostgreSQL the ``Transaction`` rows are first written with a binary ``COPY`` straight into the table
    (the fast path). ``COPY`` has no ``ON CONFLICT``: if a row of the block is already there (the block was
    applied before under another checkpoint, or after a partial rebuild), the unique key (tx id, kind, wallet)
    raises, the whole transaction rolls back, and the block is applied again with ``INSERT ... ON CONFLICT DO
    NOTHING`` — same end state, the handlers stay idempotent.
    """
    return apply_blocks([block], name=name)[0]


def apply_blocks(blocks: Sequence[ChaincodeEventBlock | PreparedBlock], *,
                 name: str = CHECKPOINT_NAME) -> list[ApplyResult]:
    """:func:`apply_block` for consecutive blocks already queued (catching up), in **one** transaction.

    The end state is that of :func:`apply_block` called on each block in turn: the effects are folded block by
    block in order (the last write wins; every row keeps its own block number and block time) and written
    with one set of bulk statements, and the checkpoint is the last fully applied block. A malformed event in
    block k commits the blocks before k and the events of k before it, exactly as :func:`apply_block` would
    have; the blocks after k are not applied (no result for them). A crash before COMMIT loses the whole
    batch together with its checkpoint: it is read again on restart.

    Returns one result per block looked at, in order; only the last one can have ``malformed`` set.
    A :class:`PreparedBlock` (folded ahead by :func:`prepare_block`) is not folded again unless only part of
    it is still pending (the checkpoint names a transaction inside it).
    With the test-only crash hook set, the block it names always starts its own batch (the blocks before it
    are committed first), so the hook keeps meaning "this block and nothing before it".
    """
    blocks = list(blocks)
    crash = _crash_block()
    if crash is not None and len(blocks) > 1:
        for i, block in enumerate(blocks):
            if block.block_number == crash and i > 0:
                first = apply_blocks(blocks[:i], name=name)
                if first[-1].malformed is not None:
                    return first
                return first + apply_blocks(blocks[i:], name=name)
    if not blocks:
        return []
    started = time.perf_counter()
    try:
        results, written = _apply(blocks, name, copy_rows=connection.vendor == "postgresql")
    except psycopg_errors.UniqueViolation:
        logger.info("blocks %s-%s: some of their rows exist already, applying them again with ON CONFLICT DO "
                    "NOTHING", blocks[0].block_number, blocks[-1].block_number,
                    extra={"block": blocks[0].block_number})
        results, written = _apply(blocks, name, copy_rows=False)
    if not written:
        return results
    metrics.PROCESSING_DURATION.observe(time.perf_counter() - started)
    for result in results:
        metrics.EVENTS_PROCESSED.labels("success").inc(result.applied)
        for event_name, count in result.skipped.items():
            metrics.EVENTS_PROCESSED.labels("skipped").inc(count)
            metrics.EVENTS_SKIPPED.labels(event_name).inc(count)
        if result.malformed is not None:
            metrics.EVENTS_PROCESSED.labels("failed").inc()
    metrics.CHECKPOINT_BLOCK.set(results[-1].checkpoint[0])
    return results


def _apply(blocks: list[ChaincodeEventBlock | PreparedBlock], name: str, *,
           copy_rows: bool) -> tuple[list[ApplyResult], list[BlockEffects]]:
    """The transaction of :func:`apply_blocks`; no effects when every block was applied already."""
    results: list[ApplyResult] = []
    folded: list[BlockEffects] = []
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Safe for a projection: a block lost in a database crash is lost together with its checkpoint,
            # so it is simply read again from the chain. Saves an fsync wait per block.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        try:
            checkpoint = Checkpoint.objects.select_for_update().get(name=name)
        except Checkpoint.DoesNotExist:
            Checkpoint.objects.get_or_create(name=name)
            checkpoint = Checkpoint.objects.select_for_update().get(name=name)
        now = timezone.now()
        any_events = False
        for block in blocks:
            result = ApplyResult(block.block_number)
            results.append(result)
            events = _pending_events(block, checkpoint)
            if events is None:
                result.already_applied = True
                result.checkpoint = (checkpoint.block_number, checkpoint.transaction_id)
                continue
            any_events = any_events or bool(events)
            if isinstance(block, PreparedBlock) and len(events) == len(block.events):
                effects, result.malformed, last_tx = block.effects, block.malformed, block.last_tx
            else:
                effects, result.malformed, last_tx = _fold(block.block_number, events)
            folded.append(effects)
            result.applied = effects.applied
            result.skipped = effects.skipped
            if result.malformed is None:
                checkpoint.block_number, checkpoint.transaction_id = block.block_number + 1, ""
                checkpoint.error, checkpoint.error_tx_id, checkpoint.error_since = "", "", None
            else:
                if last_tx:
                    checkpoint.block_number, checkpoint.transaction_id = block.block_number, last_tx
                elif checkpoint.block_number < block.block_number:
                    # Nothing of this block applied yet: resume at it (blocks in between had no events).
                    checkpoint.block_number, checkpoint.transaction_id = block.block_number, ""
                _set_error(checkpoint, result.malformed.event.transaction_id, str(result.malformed), now)
            result.checkpoint = (checkpoint.block_number, checkpoint.transaction_id)
            if result.malformed is not None:
                break
        if not folded:
            return results, folded
        written = [e for e in folded if e.wallets or e.profiles or e.transactions]
        if written:
            block_times = _block_times([e.block_number for e in written], now)
            _write_effects(written, block_times, now, copy_rows=copy_rows)
        if any_events:
            checkpoint.last_event_at = now
        checkpoint.save(update_fields=["block_number", "transaction_id", "last_event_at", "error", "error_tx_id",
                                       "error_since", "updated_at"])
        # Delivered at COMMIT: API requests waiting for these blocks wake then (gxbackend.progress).
        progress.notify_checkpoint(checkpoint.block_number)
        for effects in folded:
            _maybe_crash("before_commit", effects.block_number)
    return results, folded


def _fold(block_number: int, events: Iterable[ChaincodeEvent]) -> tuple[BlockEffects, MalformedEvent | None, str]:
    """Folds ``events`` in order up to the first malformed one: (effects, that event's error, last folded tx)."""
    effects = BlockEffects(block_number)
    last_tx = ""
    for event in events:
        try:
            fold_event(effects, event)
        except MalformedEvent as exc:
            return effects, exc, last_tx
        last_tx = event.transaction_id
    return effects, None, last_tx


@dataclass(frozen=True)
class PreparedBlock:
    """A block whose events were all folded ahead of time (payloads parsed and validated, no database).

    The worker's stream thread prepares the blocks it queues, so the parsing of the next blocks runs while
    PostgreSQL writes the current ones. Folding touches no database state, so the result is the same whenever
    it is done; :func:`apply_blocks` still decides which events are pending from the locked checkpoint.
    """

    block: ChaincodeEventBlock
    effects: BlockEffects
    malformed: MalformedEvent | None
    last_tx: str

    @property
    def block_number(self) -> int:
        return self.block.block_number

    @property
    def events(self) -> tuple[ChaincodeEvent, ...]:
        return self.block.events


def prepare_block(block: ChaincodeEventBlock) -> ChaincodeEventBlock | PreparedBlock:
    """``block`` folded ahead (see :class:`PreparedBlock`); the block itself if a handler raised unexpectedly
    (:func:`apply_blocks` folds it again and reports that failure as it always does)."""
    try:
        effects, malformed, last_tx = _fold(block.block_number, block.events)
    except Exception:
        return block
    return PreparedBlock(block, effects, malformed, last_tx)


def _pending_events(block: ChaincodeEventBlock | PreparedBlock, checkpoint: Checkpoint) -> list[ChaincodeEvent] | None:
    """The events of ``block`` not yet applied, or ``None`` when the whole block is behind the checkpoint."""
    if block.block_number < checkpoint.block_number:
        return None
    events = list(block.events)
    if block.block_number == checkpoint.block_number and checkpoint.transaction_id:
        # The gateway already skips up to the checkpoint transaction; do it again in case a stream did not.
        tx_ids = [e.transaction_id for e in events]
        if checkpoint.transaction_id in tx_ids:
            events = events[tx_ids.index(checkpoint.transaction_id) + 1:]
    return events


def _set_error(checkpoint: Checkpoint, tx_id: str, message: str, now: datetime) -> None:
    if checkpoint.error_tx_id != tx_id or not checkpoint.error_since:
        checkpoint.error_since = now
    checkpoint.error, checkpoint.error_tx_id = message[:2000], tx_id


def record_failure(*, tx_id: str, message: str, name: str = CHECKPOINT_NAME) -> None:
    """Stores why the projector is stuck (a handler crashed; its transaction was rolled back)."""
    with transaction.atomic():
        Checkpoint.objects.get_or_create(name=name)
        checkpoint = Checkpoint.objects.select_for_update().get(name=name)
        _set_error(checkpoint, tx_id, message, timezone.now())
        checkpoint.save(update_fields=["error", "error_tx_id", "error_since", "updated_at"])
    metrics.EVENTS_PROCESSED.labels("failed").inc()


def store_chain_height(height: int, *, name: str = CHECKPOINT_NAME) -> Checkpoint:
    """Stores the polled chain height (read by the API's /readyz, which never calls Fabric)."""
    Checkpoint.objects.get_or_create(name=name)
    Checkpoint.objects.filter(name=name).update(chain_height=height, chain_height_at=timezone.now())
    checkpoint = Checkpoint.objects.get(name=name)
    metrics.BLOCKCHAIN_HEIGHT.set(height)
    metrics.LAG_BLOCKS.set(lag_blocks(height=height, block_number=checkpoint.block_number) or 0)
    return checkpoint


def reset_projections(*, name: str = CHECKPOINT_NAME) -> None:
    """Empties every read model the projector writes and rewinds the checkpoint to block 0, atomically.

    Profiles the projector moved on-chain (ACTIVE, FROZEN) go back to APPROVED_PENDING_ONCHAIN; replaying the
    chain brings them back. ``ProjectedBlock`` is kept so replayed rows get the same block times.
    """
    with transaction.atomic():
        Transaction.objects.all().delete()
        Wallet.objects.all().delete()  # no cascade to transactions (no DB FK): they are deleted first
        UserProfile.objects.filter(status__in=[ProfileStatus.ACTIVE, ProfileStatus.FROZEN]).update(
            status=ProfileStatus.APPROVED_PENDING_ONCHAIN, onchain_registered_at=None, updated_at=timezone.now())
        Checkpoint.objects.get_or_create(name=name)
        Checkpoint.objects.filter(name=name).update(block_number=0, transaction_id="", error="", error_tx_id="",
                                                    error_since=None, last_event_at=None)


# -- bulk writes -------------------------------------------------------------------------------------------
def _block_times(block_numbers: list[int], now: datetime) -> dict[int, datetime]:
    """The blocks' times: when this database first applied each (the event stream carries no timestamp)."""
    if connection.vendor == "postgresql":
        table = ProjectedBlock._meta.db_table
        with _raw_cursor() as cursor:
            # One round trip: the SELECT does not see the rows the INSERT adds (same snapshot), so each block
            # comes back once.
            cursor.execute(
                f"""WITH ins AS (INSERT INTO {table} (block_number, applied_at)
                                 SELECT b, %s FROM unnest(%s::bigint[]) AS b
                                 ON CONFLICT (block_number) DO NOTHING RETURNING block_number, applied_at)
                    SELECT block_number, applied_at FROM ins UNION ALL
                    SELECT block_number, applied_at FROM {table} WHERE block_number = ANY(%s::bigint[])""",  # noqa: S608
                [now, block_numbers, block_numbers])
            times = dict(cursor.fetchall())
        assert len(times) == len(block_numbers)
        return times
    times = {}
    for number in block_numbers:
        block, _ = ProjectedBlock.objects.get_or_create(block_number=number, defaults={"applied_at": now})
        times[number] = block.applied_at
    return times


def _raw_cursor() -> psycopg.Cursor[Any]:
    """A server-side-binding cursor on Django's connection (same transaction).

    Django's psycopg backend uses ``ClientCursor``, which quotes every array element into the SQL text in
    Python; this cursor sends parameters separately (binary where psycopg can), and psycopg prepares a
    statement run more than a few times. Statements on it bypass Django's query logging.
    """
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


# On-chain id (hex) -> UUID, or None when the id is not a UUID in hex (a pure function of the string, cached).
_UUID_OF: dict[str, uuid.UUID | None] = {}
_UUID_OF_MAX = 200_000
_ONCHAIN_UUID = re.compile(r"[0-9a-f]{32}")


def _uuid_of(onchain_id: str) -> uuid.UUID | None:
    try:
        return _UUID_OF[onchain_id]
    except KeyError:
        pass
    # Exactly the form the backend writes (uuid.hex): uuid.UUID(hex=) would also take "_" (int() does) and
    # upper case, so another organisation's user "A0…" or "a0…_1" would alias a local user, or reach
    # PostgreSQL's uuid parser and stop the projector at that event for ever.
    pk = uuid.UUID(hex=onchain_id) if _ONCHAIN_UUID.fullmatch(onchain_id) else None
    if len(_UUID_OF) >= _UUID_OF_MAX:
        _UUID_OF.clear()
    _UUID_OF[onchain_id] = pk
    return pk


def _local_users(onchain_ids: Iterable[str]) -> dict[str, uuid.UUID]:
    """On-chain ids (UUID hex, docs/CHAINCODE.md) that belong to a local user, mapped to the user's UUID."""
    candidates: dict[str, uuid.UUID] = {}
    for onchain_id in onchain_ids:
        pk = _uuid_of(onchain_id)
        if pk is not None:
            candidates[onchain_id] = pk
    if not candidates:
        return {}
    if connection.vendor == "postgresql":
        with _raw_cursor() as cursor:
            # The hex ids as an array literal (uuid_in reads hex without dashes): no per-element dumping.
            cursor.execute(f"SELECT id FROM {User._meta.db_table} WHERE id = ANY(%s::uuid[])",  # noqa: S608
                           [_array_literal(list(candidates))])
            existing = {row[0] for row in cursor.fetchall()}
    else:
        existing = set(User.objects.filter(id__in=candidates.values()).values_list("id", flat=True))
    return {onchain_id: pk for onchain_id, pk in candidates.items() if pk in existing}


def _write_effects(folded: list[BlockEffects], block_times: dict[int, datetime], now: datetime, *,
                   copy_rows: bool = False) -> None:
    """Writes the effects of consecutive blocks (in order); PostgreSQL: one statement per table for them all."""
    touched: set[str] = set()
    for effects in folded:
        touched.update(effects.wallets, effects.profiles, (row.user_id for row in effects.transactions))
    users = _local_users(touched)
    unknown = touched - users.keys()
    first = folded[0].block_number
    if unknown:
        # Not an error of the chain: a user registered by another backend has no profile here.
        logger.warning("block %s: %d on-chain user(s) without a local user, their effects are left out",
                       first, len(unknown), extra={"block": first})
        metrics.UNKNOWN_USERS.labels("any").inc(len(unknown))
    if connection.vendor != "postgresql":
        for effects in folded:
            _write_generic(effects, users, block_times[effects.block_number], now)
        return
    wallets: dict[str, WalletChange] = {}
    profiles: dict[str, tuple[str, datetime | None]] = {}
    for effects in folded:  # in block order: the last write wins, as with one transaction per block
        for onchain_id, change in effects.wallets.items():
            merged = wallets.get(onchain_id)
            if merged is None:
                wallets[onchain_id] = WalletChange(change.balance, change.frozen, change.frozen_reason)
                continue
            if change.balance is not None:
                merged.balance = change.balance
            if change.frozen is not None:
                merged.frozen = change.frozen
            if change.frozen_reason is not None:
                merged.frozen_reason = change.frozen_reason
        block_time = block_times[effects.block_number]
        for onchain_id, profile in effects.profiles.items():
            registered = block_time if profile.registered else profiles.get(onchain_id, ("", None))[1]
            profiles[onchain_id] = (profile.status, registered)
    with _raw_cursor() as cursor:
        _write_wallets_pg(cursor, wallets, users, now)
        for effects in folded:
            _maybe_crash("mid_block", effects.block_number)
        _write_profiles_pg(cursor, profiles, users, now)
        if copy_rows:
            _copy_transactions_pg(cursor, folded, users, block_times, now)
        else:
            _write_transactions_pg(cursor, folded, users, block_times, now)


def _array_literal(items: list[str]) -> str:
    """A PostgreSQL array literal of already safe elements (hex, digits, t/f, NULL), parsed by the server in C.

    psycopg's array dumper walks a list element by element in Python; a block touches ~1,000 wallets.
    """
    return "{" + ",".join(items) + "}"


def _text_element(value: str | None) -> str:
    if value is None:
        return "NULL"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_wallets_pg(cursor: psycopg.Cursor[Any], changes: dict[str, WalletChange], users: dict[str, uuid.UUID],
                      now: datetime) -> None:
    id_items, balance_items, frozen_items, reason_items = [], [], [], []
    for onchain_id, change in changes.items():
        if onchain_id in users:
            id_items.append(onchain_id)  # a 32-character hex id (_local_users), which uuid_in reads as is
            balance_items.append("NULL" if change.balance is None else str(change.balance))
            frozen_items.append("NULL" if change.frozen is None else "t" if change.frozen else "f")
            reason_items.append(_text_element(change.frozen_reason))
    if not id_items:
        return
    ids, balances, frozen, reasons = (_array_literal(id_items), _array_literal(balance_items),
                                      _array_literal(frozen_items), _array_literal(reason_items))
    table = Wallet._meta.db_table
    # One statement: update the wallets that exist (NULL = "not changed by these blocks"), insert the others
    # with the same values on top of the defaults. ON CONFLICT stays as a guard.
    cursor.execute(
        f"""WITH t AS (SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::boolean[], %s::text[]) AS t(u, b, f, r)),
                 upd AS (UPDATE {table} AS w SET balance_qirat = COALESCE(t.b, w.balance_qirat),
                                frozen = COALESCE(t.f, w.frozen), frozen_reason = COALESCE(t.r, w.frozen_reason),
                                updated_at = %s
                         FROM t WHERE w.user_id = t.u RETURNING w.user_id)
            INSERT INTO {table} (user_id, balance_qirat, frozen, frozen_reason, created_at, updated_at)
            SELECT t.u, COALESCE(t.b, 0), COALESCE(t.f, false), COALESCE(t.r, ''), %s, %s FROM t
            WHERE t.u NOT IN (SELECT user_id FROM upd)
            ON CONFLICT (user_id) DO NOTHING""",  # noqa: S608
        [ids, balances, frozen, reasons, now, now, now],
    )


def _write_profiles_pg(cursor: psycopg.Cursor[Any], changes: dict[str, tuple[str, datetime | None]],
                       users: dict[str, uuid.UUID], now: datetime) -> None:
    """``changes``: on-chain id -> (status, onchain_registered_at to set or ``None`` = leave it)."""
    ids, statuses, registered = [], [], []
    for onchain_id, (status, registered_at) in changes.items():
        pk = users.get(onchain_id)
        if pk is not None:
            ids.append(pk)
            statuses.append(status)
            registered.append(registered_at)
    if not ids:
        return
    cursor.execute(
        f"""UPDATE {UserProfile._meta.db_table} AS p SET status = t.s,
                   onchain_registered_at = COALESCE(t.r, p.onchain_registered_at), updated_at = %s
            FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[]) AS t(u, s, r)
            WHERE p.user_id = t.u""",  # noqa: S608
        [now, ids, statuses, registered],
    )


_TX_COLUMNS = ("wallet_id, kind, amount_qirat, fee_qirat, counterparty_id, remark, tx_id, block_number, block_time, "
               "created_at")
_TX_TYPES = ("uuid", "text", "int8", "int8", "text", "text", "text", "int8", "timestamptz", "timestamptz")


def _copy_transactions_pg(cursor: psycopg.Cursor[Any], folded: list[BlockEffects], users: dict[str, uuid.UUID],
                          block_times: dict[int, datetime], now: datetime) -> None:
    """The fast path: binary COPY into the table; raises ``UniqueViolation`` if a row exists already."""
    if not any(effects.transactions for effects in folded):
        return
    with cursor.copy(f"COPY {Transaction._meta.db_table} ({_TX_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_TX_TYPES)
        write_row = copy.write_row
        for effects in folded:
            block_number, block_time = effects.block_number, block_times[effects.block_number]
            for r in effects.transactions:
                pk = users.get(r.user_id)
                if pk is not None:
                    write_row((pk, r.kind, r.amount, r.fee, r.counterparty_id, r.remark, r.tx_id, block_number,
                               block_time, now))


def _write_transactions_pg(cursor: psycopg.Cursor[Any], folded: list[BlockEffects], users: dict[str, uuid.UUID],
                           block_times: dict[int, datetime], now: datetime) -> None:
    """The idempotent path: rows already there (same tx id, kind and wallet) are left as they are."""
    wallets, kinds, amounts, fees, counterparties, remarks, tx_ids, numbers = [], [], [], [], [], [], [], []
    for effects in folded:
        for row in effects.transactions:
            pk = users.get(row.user_id)
            if pk is None:
                continue
            wallets.append(pk)
            kinds.append(row.kind)
            amounts.append(row.amount)
            fees.append(row.fee)
            counterparties.append(row.counterparty_id)
            remarks.append(row.remark)
            tx_ids.append(row.tx_id)
            numbers.append(effects.block_number)
    if not wallets:
        return
    times = sorted(block_times.items())
    cursor.execute(
        f"""INSERT INTO {Transaction._meta.db_table} ({_TX_COLUMNS})
            SELECT w, k, a, f, c, r, x, n, bt.at, %s
            FROM unnest(%s::uuid[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[],
                        %s::bigint[]) AS t(w, k, a, f, c, r, x, n)
            JOIN unnest(%s::bigint[], %s::timestamptz[]) AS bt(number, at) ON bt.number = t.n
            ON CONFLICT (tx_id, kind, wallet_id) DO NOTHING""",  # noqa: S608
        [now, wallets, kinds, amounts, fees, counterparties, remarks, tx_ids, numbers,
         [n for n, _ in times], [t for _, t in times]],
    )


def _write_generic(effects: BlockEffects, users: dict[str, uuid.UUID], block_time: datetime,
                   now: datetime) -> None:
    """SQLite (``make run``): the same effects through the ORM, a statement per row."""
    for onchain_id, change in effects.wallets.items():
        if onchain_id not in users:
            continue
        wallet, _ = Wallet.objects.get_or_create(user_id=users[onchain_id])
        if change.balance is not None:
            wallet.balance_qirat = change.balance
        if change.frozen is not None:
            wallet.frozen = change.frozen
        if change.frozen_reason is not None:
            wallet.frozen_reason = change.frozen_reason
        wallet.save()
    _maybe_crash("mid_block", effects.block_number)
    for onchain_id, change in effects.profiles.items():
        if onchain_id not in users:
            continue
        fields: dict[str, object] = {"status": change.status, "updated_at": now}
        if change.registered:
            fields["onchain_registered_at"] = block_time
        UserProfile.objects.filter(user_id=users[onchain_id]).update(**fields)
    Transaction.objects.bulk_create(
        [Transaction(wallet_id=users[r.user_id], kind=r.kind, amount_qirat=r.amount, fee_qirat=r.fee,
                     counterparty_id=r.counterparty_id, remark=r.remark, tx_id=r.tx_id,
                     block_number=effects.block_number, block_time=block_time)
         for r in effects.transactions if r.user_id in users],
        ignore_conflicts=True,
    )


def _crash_block() -> int | None:
    """The block the test-only crash hook names, if it is set (and ``DEBUG`` is on)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted or not settings.DEBUG:
        return None
    try:
        return int(wanted.rpartition(":")[2])
    except ValueError:
        return None


def _maybe_crash(point: str, block_number: int) -> None:
    """The documented test-only crash hook (see the module docstring)."""
    wanted = os.environ.get(CRASH_ENV)
    if wanted and settings.DEBUG and wanted == f"{point}:{block_number}":
        logger.warning("crash hook %s: SIGKILL at %s of block %s", wanted, point, block_number)
        os.kill(os.getpid(), signal.SIGKILL)
