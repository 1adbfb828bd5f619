"""Writes of the outbox: enqueue (inside the caller's transaction), claim into leases, record outcomes, requeue.

Every write a submitter makes about a command it is working on is *fenced* by its lease: the update carries
``locked_by=<worker>`` and the claim's ``lease_token`` (new at every claim), so once a lease was taken over (it
expired and another submitter, or another thread of the same one, claimed the row) the old holder's late
writes change nothing and it stops (``LeaseLost``).
"""

from __future__ import annotations

import functools
import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from gxbackend import progress
from gxbackend.exceptions import ValidationFailed
from outbox.models import UNFINISHED, CommandStatus, CommandType, OutboxCommand

NOTIFY_CHANNEL = "outbox_command"

# --- payload validation (docs/CHAINCODE.md formats: a bad payload is the caller's error, never a burned retry) ---
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BIOMETRIC = re.compile(r"[0-9a-f]{64}")
_NATIONALITY = re.compile(r"[A-Z]{2}")
_AGE = re.compile(r"0|[1-9][0-9]{0,2}")
_AMOUNT = re.compile(r"[1-9][0-9]*")
_RESERVED_IDS = {"SYSTEM_GENESIS_POOL"}

#: Payload fields per command type: name → required. The chaincode call built from each is in submitter.py.
PAYLOAD_FIELDS: dict[str, dict[str, bool]] = {
    CommandType.CREATE_USER: {"user_id": True, "biometric_hash": True, "nationality": True, "age": True},
    CommandType.TRANSFER: {"from_user_id": True, "to_user_id": True, "amount_qirat": True,
                           "tx_type": False, "remark": False},
    CommandType.FREEZE_WALLET: {"user_id": True, "reason": True},
    CommandType.UNFREEZE_WALLET: {"user_id": True},
}
# The aggregate (the order key) is the user the command acts for: the sender of a transfer.
_AGGREGATE_FIELD = {
    CommandType.CREATE_USER: "user_id",
    CommandType.TRANSFER: "from_user_id",
    CommandType.FREEZE_WALLET: "user_id",
    CommandType.UNFREEZE_WALLET: "user_id",
}


def _user_id_error(value: Any) -> str | None:
    if not isinstance(value, str) or not _USER_ID.fullmatch(value) or value in _RESERVED_IDS:
        return "Must be 1–64 characters of A-Z, a-z, 0-9, '_' or '-' (a user's id in hex)."
    return None


def _text_error(value: Any, *, minimum: int, maximum: int) -> str | None:
    if not isinstance(value, str) or not minimum <= len(value) <= maximum:
        return f"Must be a string of {minimum}–{maximum} characters."
    return None


def _integer_string(value: Any, pattern: re.Pattern[str]) -> str | None:
    """``value`` as the chaincode's decimal string, or None when it is not an integer of that format."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    return None


def validate_payload(command_type: str, aggregate_id: str, payload: Any) -> dict[str, Any]:
    """Checks ``payload`` against the command type's chaincode formats; returns it normalised.

    Normalised: integers become the decimal strings the chaincode takes (``age``, ``amount_qirat``) and
    optional fields get their defaults. Raises :class:`ValidationFailed` with one message per bad field
    (``fields`` keys are ``payload.<name>``).
    """
    try:
        kind = CommandType(command_type)
    except ValueError:
        raise ValidationFailed(f"Unknown command type {command_type!r}.", fields={
            "command_type": [f"Must be one of {', '.join(CommandType.values)}."]}) from None
    if not isinstance(payload, dict):
        raise ValidationFailed("The command payload must be an object.", fields={"payload": ["Must be an object."]})
    spec = PAYLOAD_FIELDS[kind]
    errors: dict[str, list[str]] = {}
    for name, required in spec.items():
        if required and name not in payload:
            errors[f"payload.{name}"] = ["This field is required."]
    for name in payload:
        if name not in spec:
            errors[f"payload.{name}"] = ["Unknown field."]
    data = dict(payload)

    def check(name: str, message: str | None) -> None:
        if message and name in data:
            errors.setdefault(f"payload.{name}", []).append(message)

    if kind == CommandType.CREATE_USER:
        check("user_id", _user_id_error(data.get("user_id")))
        check("biometric_hash", None if isinstance(data.get("biometric_hash"), str)
              and _BIOMETRIC.fullmatch(data["biometric_hash"]) else "Must be 64 lowercase hex characters (SHA-256).")
        check("nationality", None if isinstance(data.get("nationality"), str)
              and _NATIONALITY.fullmatch(data["nationality"]) else "Must be an ISO 3166-1 alpha-2 code in upper case.")
        age = _integer_string(data.get("age"), _AGE)
        if age is None or int(age) > 150:
            check("age", "Must be an integer from 0 to 150.")
        else:
            data["age"] = age
    elif kind == CommandType.TRANSFER:
        data.setdefault("tx_type", "")
        data.setdefault("remark", "")
        check("from_user_id", _user_id_error(data.get("from_user_id")))
        check("to_user_id", _user_id_error(data.get("to_user_id")))
        amount = _integer_string(data.get("amount_qirat"), _AMOUNT)
        if amount is None:
            check("amount_qirat", "Must be a whole number of qirat, at least 1.")
        else:
            data["amount_qirat"] = amount
        if data["tx_type"] not in ("", "P2P"):
            check("tx_type", "Must be '' (automatic) or 'P2P'.")
        check("remark", _text_error(data["remark"], minimum=0, maximum=140))
        if "to_user_id" in data and data.get("to_user_id") == data.get("from_user_id"):
            check("to_user_id", "Cannot transfer to the sender.")
    elif kind == CommandType.FREEZE_WALLET:
        check("user_id", _user_id_error(data.get("user_id")))
        check("reason", _text_error(data.get("reason"), minimum=1, maximum=140))
    else:
        check("user_id", _user_id_error(data.get("user_id")))

    field = _AGGREGATE_FIELD[kind]
    if field in data and f"payload.{field}" not in errors and aggregate_id != data[field]:
        errors["aggregate_id"] = [f"Must equal payload.{field} (commands are ordered per user)."]
    if errors:
        raise ValidationFailed("The command payload is invalid.", fields=errors)
    return data


# --- enqueue -------------------------------------------------------------------------------------------------
def notify_submitters() -> None:
    """Wake the submitters (PostgreSQL LISTEN/NOTIFY). Inside a transaction it is delivered at commit only,
    and several in one transaction are delivered once; elsewhere submitters poll."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")


def outbox_enqueue(
    *,
    command_type: CommandType | str,
    aggregate_id: str,
    payload: dict[str, Any],
    idempotency_key: str | None = None,
    request_id: str = "",
    requested_by: Any = None,
) -> OutboxCommand:
    """Adds a command for the chain; must run inside the caller's ``transaction.atomic()``.

    Payloads (ids are the profile UUID in hex; amounts are integers of qirat, as int or decimal string):
    ``CREATE_USER {user_id, biometric_hash, nationality, age}``,
    ``TRANSFER {from_user_id, to_user_id, amount_qirat, tx_type="", remark=""}`` (the row's idempotency key
    becomes the chaincode's ``idempotencyKey``), ``FREEZE_WALLET {user_id, reason}``,
    ``UNFREEZE_WALLET {user_id}``; ``aggregate_id`` is the user (the sender of a transfer).
    Raises :class:`ValidationFailed` for a bad payload, so the caller's transaction rolls back.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_enqueue must be called inside the caller's transaction")
    data = validate_payload(str(command_type), aggregate_id, payload)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 128:
        raise ValidationFailed("The idempotency key is invalid.",
                               fields={"idempotency_key": ["Must be 1–128 characters."]})
    command = OutboxCommand.objects.create(
        command_type=CommandType(command_type),
        aggregate_id=aggregate_id,
        payload=data,
        idempotency_key=idempotency_key or uuid.uuid4().hex,
        request_id=request_id,
        requested_by=requested_by,
        max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
        next_attempt_at=timezone.now(),
    )
    notify_submitters()
    return command


# --- claim and leases ------------------------------------------------------------------------------------
class LeaseLost(Exception):
    """Another submitter holds this command now: stop working on it, write nothing more."""

    @classmethod
    def of(cls, command_id: int, worker_id: str) -> LeaseLost:
        return cls(f"command {command_id} is no longer leased to {worker_id}")


def outbox_claim(*, worker_id: str, limit: int, lease_seconds: float | None = None) -> list[int]:
    """Like :func:`outbox_claim_commands`, returning the ids."""
    return [c.id for c in outbox_claim_commands(worker_id=worker_id, limit=limit, lease_seconds=lease_seconds)]


def outbox_claim_commands(
    *, worker_id: str, limit: int, lease_seconds: float | None = None, exclude_ids: Iterable[int] = (),
) -> list[OutboxCommand]:
    """Leases up to ``limit`` due commands to ``worker_id``, oldest first, and returns them as leased.

    A command is due when it is unfinished, its ``next_attempt_at`` has passed, nobody holds a live lease on
    it, and no earlier command of its aggregate is unfinished (per-user order: at most one command per user
    is ever in flight). Rows another claimer has locked are skipped (SKIP LOCKED), and the transaction is
    over before this returns: the lease, not a lock, says who works on a row. Each claim counts an attempt
    and gets a new ``lease_token``, which fences the claimer's writes (see :func:`_fenced`).

    ``exclude_ids``: rows the caller is still working on. A process never claims one of its own rows again,
    even when its lease expired (renewals failed for a while): the thread on it carries on, and would
    otherwise race a second thread of the same process on the same row.
    """
    now = timezone.now()
    lease_until = now + timedelta(
        seconds=lease_seconds if lease_seconds is not None else settings.OUTBOX_LEASE_SECONDS)
    token = uuid.uuid4()  # one per claim: each row is in one claim at most once
    if connection.vendor == "postgresql":
        params = {"now": now, "limit": limit, "worker": worker_id, "until": lease_until, "token": token,
                  "exclude": list(exclude_ids)}
        with transaction.atomic(), connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_CLAIM_SETTINGS_SQL, prepare=True)
            cursor.execute(_CLAIM_SQL, params, prepare=True, binary=True)
            rows = cursor.fetchall()
        return sorted((_command_from_row(row) for row in rows), key=lambda c: c.id)
    # Other databases (SQLite in development): the same claim in two ORM statements.
    first_unfinished = OutboxCommand.objects.filter(
        aggregate_id=OuterRef("aggregate_id"), status__in=UNFINISHED
    ).order_by("id").values("id")[:1]
    with transaction.atomic():
        commands = list(
            OutboxCommand.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status__in=UNFINISHED, next_attempt_at__lte=now)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .filter(id=Subquery(first_unfinished))
            .exclude(id__in=list(exclude_ids))
            .order_by("id")[:limit]
        )
        if commands:
            OutboxCommand.objects.filter(id__in=[c.id for c in commands]).update(
                locked_by=worker_id, locked_until=lease_until, lease_token=token, attempts=F("attempts") + 1,
                last_attempt_at=now,
            )
    for command in commands:
        command.locked_by, command.locked_until, command.last_attempt_at = worker_id, lease_until, now
        command.lease_token = token
        command.attempts += 1
    return commands


# The claim on PostgreSQL: one statement, written once, bound server side, prepared on each connection and
# read without RawQuerySet's per-column machinery. Building the ORM form (a select_for_update with a correlated
# subquery, then an UPDATE) cost ~2.5 ms of the submitter's CPU per claim, more than a command's Fabric work
# (bench/outbox.py, CPU per command). "The first unfinished command of its aggregate" is a scalar subquery:
# PostgreSQL probes the (aggregate_id, id) index once per candidate (the NOT EXISTS form was planned as an anti
# join that compared every candidate with every unfinished row: 77 ms for 440 rows, measured).
_CLAIM_SQL = """
WITH due AS (
    SELECT c.id FROM outbox_outboxcommand c
    WHERE c.status IN ('PENDING', 'SUBMITTED') AND c.next_attempt_at <= %(now)s
      AND (c.locked_until IS NULL OR c.locked_until < %(now)s)
      AND c.id = (SELECT f.id FROM outbox_outboxcommand f
                  WHERE f.aggregate_id = c.aggregate_id AND f.status IN ('PENDING', 'SUBMITTED')
                  ORDER BY f.id LIMIT 1)
      AND NOT (c.id = ANY(%(exclude)s::bigint[]))
    ORDER BY c.id LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE outbox_outboxcommand o
SET locked_by = %(worker)s, locked_until = %(until)s, lease_token = %(token)s, attempts = o.attempts + 1,
    last_attempt_at = %(now)s
FROM due WHERE o.id = due.id
RETURNING {columns}
"""
# The claim must walk the index of unfinished rows in id order and stop after a batch. The planner's estimate
# of unfinished rows comes from statistics taken when the table was quiet: after a burst of enqueues it expects
# almost none and plans a bitmap scan that sorts every unfinished row, running the order check on each (with
# 1,000 queued, 5–8 ms per claim instead of 0.3, bench/outbox.py; O(queue) at any size). So this transaction
# forbids bitmap scans and sorts, whatever the statistics say; and commits without waiting for the WAL flush
# (relaxed_commit), all in one statement.
_CLAIM_SETTINGS_SQL = ("SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true),"
                       " set_config('synchronous_commit', 'off', true)")
# Every column, in the model's field order (the table's order differs: migrations appended columns).
_FIELDS = OutboxCommand._meta.concrete_fields
_CLAIM_SQL = _CLAIM_SQL.format(columns=", ".join(f"o.{f.column}" for f in _FIELDS))  # the model's names
_ATTNAMES = [field.attname for field in _FIELDS]


def _command_from_row(row: tuple[Any, ...]) -> OutboxCommand:
    """A claimed row as the model. The claim reads binary results: psycopg's C loaders parse the timestamps
    and the JSON, where the text format went through Django's timestamptz loader, written in Python (a tenth of
    the claim's CPU), and a ``json.loads`` of ours."""
    return OutboxCommand.from_db(DEFAULT_DB_ALIAS, _ATTNAMES, row)


def outbox_renew_leases(*, worker_id: str, ids: Iterable[int], lease_seconds: float | None = None) -> set[int]:
    """Extends this worker's leases on ``ids``; returns the ids it still holds (the others were taken over)."""
    ids = list(ids)
    if not ids:
        return set()
    lease = timedelta(seconds=lease_seconds if lease_seconds is not None else settings.OUTBOX_LEASE_SECONDS)
    mine = OutboxCommand.objects.filter(id__in=ids, locked_by=worker_id, status__in=UNFINISHED)
    with transaction.atomic():
        relaxed_commit()
        # In id order and skipping rows being written right now (they are finishing): no deadlock with the
        # submitter's own batched writes.
        lockable = list(mine.select_for_update(skip_locked=True).order_by("id").values_list("id", flat=True))
        OutboxCommand.objects.filter(id__in=lockable).update(locked_until=timezone.now() + lease)
    return set(mine.values_list("id", flat=True))


def outbox_release(*, worker_id: str, ids: Iterable[int]) -> int:
    """Hands leases back (graceful shutdown): the rows are claimable at once and the attempt is not counted.

    A row already SUBMITTED keeps its tx id and envelope, so whoever claims it next resubmits the same bytes.
    """
    released = OutboxCommand.objects.filter(id__in=list(ids), locked_by=worker_id, status__in=UNFINISHED).update(
        locked_by="", locked_until=None, lease_token=None, attempts=F("attempts") - 1,
    )
    if released:
        notify_submitters()
    return released


def relaxed_commit() -> None:
    """Inside a transaction: commit without waiting for the WAL flush (PostgreSQL only).

    Only for writes whose loss in a database crash is harmless: a lost claim or lease is a lease that
    expires; a lost outcome leaves the row SUBMITTED with its envelope, which the next attempt resubmits
    and asks about again. The envelope store before Submit is always durable. Measured: the flush cost
    30–60 ms per write under load, on the path of every command.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _fenced(command_id: int, worker_id: str, token: uuid.UUID | None, *, failed: bool = False,
            **changes: Any) -> None:
    """Updates the row only while ``worker_id`` holds its lease from the claim whose lease token is ``token``;
    raises LeaseLost otherwise. (``token`` None checks the worker alone: callers that claim one row at a
    time, such as tests; the submitter always passes its claim's token.)

    ``failed``: the update makes the command finally FAILED; the reactions registered for its type run in
    the same transaction (:func:`register_failure_reaction`). Inside a caller's transaction (the submitter's
    batched writer) the caller decides about durability. A change to a final status also sends
    ``gx_command`` in the same transaction (API requests waiting for the command wake when it commits:
    gxbackend.progress).
    """
    changes.setdefault("updated_at", timezone.now())
    rows = _leased(command_id, worker_id, token)
    final = changes.get("status") in (CommandStatus.COMMITTED, CommandStatus.FAILED)

    def apply() -> int:
        updated = rows.update(**changes)
        if updated and failed:
            _react_to_failure(command_id)
        if updated and final:
            progress.notify_command_final(command_id)
        return updated

    outermost = not connection.in_atomic_block
    if outermost or failed:  # inside a batch: a savepoint, so a failing reaction takes the FAILED write back
        with transaction.atomic():
            if outermost:
                relaxed_commit()
            updated = apply()
    else:
        updated = apply()
    if not updated:
        raise LeaseLost.of(command_id, worker_id)


def _leased(command_id: int, worker_id: str, token: uuid.UUID | None) -> Any:
    """The row, while ``worker_id`` holds its lease from the claim with lease token ``token`` (None: the worker
    alone): the fence of every write a submitter makes (the many-statements' WHERE says the same in SQL)."""
    rows = OutboxCommand.objects.filter(id=command_id, locked_by=worker_id)
    return rows if token is None else rows.filter(lease_token=token)


# --- reactions to a final failure ------------------------------------------------------------------------
FailureReaction = Callable[[OutboxCommand], None]
_failure_reactions: dict[str, list[FailureReaction]] = {}


def register_failure_reaction(command_type: CommandType | str, reaction: FailureReaction) -> None:
    """Calls ``reaction(command)`` whenever a command of ``command_type`` becomes FAILED (a chaincode refusal,
    a final validation code or a dead letter), inside the transaction that records it, so the domain learns
    of the failure exactly when the outbox does (called from an app's ``ready()``: the outbox imports no app).
    """
    reactions = _failure_reactions.setdefault(str(command_type), [])
    if reaction not in reactions:
        reactions.append(reaction)


def _react_to_failure(command_id: int) -> None:
    if not _failure_reactions:
        return
    command = OutboxCommand.objects.get(id=command_id)
    for reaction in _failure_reactions.get(command.command_type, ()):
        reaction(command)


# --- outcomes ----------------------------------------------------------------------------------------------
def backoff_seconds(attempts: int, *, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after ``attempts`` tries: exponential, capped, jittered to 50–100 %.

    The jitter spreads retries of many rows that failed together (e.g. the peer was down) over time.
    """
    base = settings.OUTBOX_BACKOFF_BASE_SECONDS * (2 ** max(0, attempts - 1))
    capped = min(settings.OUTBOX_BACKOFF_MAX_SECONDS, base)
    return capped * (0.5 + 0.5 * (rng or random).random())


def outbox_record_endorsed(*, command_id: int, worker_id: str, tx_id: str, envelope: bytes,
                           lease_token: uuid.UUID | None = None) -> None:
    """Stores the tx id and the signed envelope *before* Submit, so a crash after this point resubmits the
    same transaction instead of making a second one."""
    _one_of_many(outbox_record_endorsed_many, command_id=command_id, worker_id=worker_id,
                 lease_token=lease_token, tx_id=tx_id, envelope=envelope)


def outbox_record_committed(*, command_id: int, worker_id: str, block_number: int, result: Any,
                            lease_token: uuid.UUID | None = None) -> None:
    """The tx id committed VALID: the command is done, and the next one of its aggregate becomes due (the
    finishing submitter wakes itself to claim it; other replicas find it when they next look)."""
    _one_of_many(outbox_record_committed_many, command_id=command_id, worker_id=worker_id,
                 lease_token=lease_token, block_number=block_number, result=result)


# The two writes on the path of every command, for many commands in one statement each (PostgreSQL). Written
# once as SQL, bound server side, and prepared on each connection (see _execute_many):
# built through the ORM, one UPDATE per command cost more of the submitter's CPU than the command's Fabric work
# (bench/outbox.py, CPU per command). Scalar parameters, not arrays: psycopg dumps those in C. Fenced like
# _fenced: a row is written only while its worker holds the lease of that claim.
_ENDORSED_SQL = """
UPDATE outbox_outboxcommand o
SET status = 'SUBMITTED', tx_id = v.tx_id, signed_envelope = v.envelope, submitted_at = %s,
    validation_code = '', block_number = NULL, updated_at = %s
FROM (VALUES {rows}) AS v(id, worker, token, tx_id, envelope)
WHERE o.id = v.id AND o.locked_by = v.worker AND (v.token IS NULL OR o.lease_token = v.token)
RETURNING o.id
"""
_ENDORSED_ROW = "(%s::bigint, %s::text, %s::uuid, %s::text, %s::bytea)"
# A command becoming final also sends gx_command (gxbackend.progress), delivered when the transaction commits.
# Run as a statement of its own (autocommit), it also relaxes its own commit (relaxed_commit, without a
# statement more): set_config(..., true) lasts until the end of the transaction, which is this statement.
_COMMITTED_SQL = """
WITH {relax}done AS (
    UPDATE outbox_outboxcommand o
    SET status = 'COMMITTED', block_number = v.block_number, validation_code = 'VALID', result = v.result,
        committed_at = %s, error_message = '', locked_by = '', locked_until = NULL, lease_token = NULL,
        updated_at = %s
    FROM (VALUES {rows}) AS v(id, worker, token, block_number, result)
    WHERE o.id = v.id AND o.locked_by = v.worker AND (v.token IS NULL OR o.lease_token = v.token)
    RETURNING o.id
)
SELECT done.id, pg_notify(%s, done.id::text) FROM done{relaxed}
"""
_COMMITTED_SQL_ALONE = _COMMITTED_SQL.replace("{relax}", "relaxed AS (SELECT set_config('synchronous_commit', "
                                               "'off', true)), ").replace("{relaxed}", ", relaxed")
_COMMITTED_SQL_IN_TRANSACTION = _COMMITTED_SQL.replace("{relax}", "").replace("{relaxed}", "")
_COMMITTED_ROW = "(%s::bigint, %s::text, %s::uuid, %s::bigint, %s::jsonb)"
_MANY_CHUNK = 64  # rows per statement at most (a power of two: see _execute_many)


def outbox_record_endorsed_many(writes: Sequence[dict[str, Any]]) -> set[int]:
    """:func:`outbox_record_endorsed` for many commands (each a dict of its keyword arguments) in one
    statement; returns the ids written (a command missing from it lost its lease). Inside the caller's
    transaction the caller decides about durability; alone, the statement commits durably."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        return _fenced_each(writes, lambda w: dict(
            status=CommandStatus.SUBMITTED, tx_id=w["tx_id"], signed_envelope=w["envelope"], submitted_at=now,
            validation_code="", block_number=None, updated_at=now))
    return _execute_many(_ENDORSED_SQL, _ENDORSED_ROW, now, [
        (w["command_id"], w["worker_id"], w.get("lease_token"), w["tx_id"], bytes(w["envelope"])) for w in writes])


def outbox_record_committed_many(writes: Sequence[dict[str, Any]]) -> set[int]:
    """:func:`outbox_record_committed` for many commands in one statement (see
    :func:`outbox_record_endorsed_many`); each written command also sends ``gx_command``. Outside a transaction
    the statement commits relaxed (:func:`relaxed_commit`)."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        return _fenced_each(writes, lambda w: dict(  # no gx_command: LISTEN/NOTIFY is PostgreSQL's
            status=CommandStatus.COMMITTED, block_number=w["block_number"], validation_code="VALID",
            result=w["result"], committed_at=now, error_message="", locked_by="", locked_until=None,
            lease_token=None, updated_at=now))
    sql = _COMMITTED_SQL_IN_TRANSACTION if connection.in_atomic_block else _COMMITTED_SQL_ALONE
    return _execute_many(sql, _COMMITTED_ROW, now, [
        (w["command_id"], w["worker_id"], w.get("lease_token"), w["block_number"],
         None if w["result"] is None else json.dumps(w["result"])) for w in writes], progress.COMMAND_CHANNEL)


def _execute_many(sql: str, row: str, now: Any, rows: list[tuple[Any, ...]], *tail: Any) -> set[int]:
    """``sql`` with its ``{rows}`` for each chunk of ``rows``: parameters ``now, now``, the rows', ``tail``.

    A chunk is padded with rows of NULLs (no id matches NULL) to the next power of two, so that each
    connection prepares a handful of statements (1, 2, 4 … 64 rows) and PostgreSQL settles on their generic
    plans: with a statement per batch size, planning was most of the statements' cost (pg_stat_statements)."""
    written: set[int] = set()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        for start in range(0, len(rows), _MANY_CHUNK):
            chunk = rows[start:start + _MANY_CHUNK]
            size = 1 << (len(chunk) - 1).bit_length()
            padding = [None] * (size - len(chunk)) * len(chunk[0])
            cursor.execute(_statement(sql, row, size),
                           [now, now, *(value for values in chunk for value in values), *padding, *tail],
                           binary=True, prepare=True)
            written.update(found for found, *_ in cursor.fetchall())
    return written


@functools.cache
def _statement(sql: str, row: str, size: int) -> str:
    """``sql`` with ``size`` rows of ``row`` for its ``{rows}`` (a handful of sizes: see _execute_many)."""
    return sql.format(rows=", ".join([row] * size))


def _fenced_each(writes: Sequence[dict[str, Any]], changes: Callable[[dict[str, Any]], dict[str, Any]]) -> set[int]:
    """The many-writes on other databases (SQLite in development): one fenced ORM update per command."""
    written = set()
    for w in writes:
        if _leased(w["command_id"], w["worker_id"], w.get("lease_token")).update(**changes(w)):
            written.add(w["command_id"])
    return written


def _one_of_many(many: Callable[[Sequence[dict[str, Any]]], set[int]], **write: Any) -> None:
    """One command's write through its many-form (a statement of its own, or part of the caller's
    transaction); LeaseLost when the lease is gone."""
    if write["command_id"] not in many([write]):
        raise LeaseLost.of(write["command_id"], write["worker_id"])


def outbox_record_failed(
    *, command_id: int, worker_id: str, error: str, chaincode_code: str = "", validation_code: str = "",
    block_number: int | None = None, dead_letter: bool = False, envelope_refused: bool = False,
    lease_token: uuid.UUID | None = None,
) -> None:
    """A final outcome: the chaincode said no (``chaincode_code``), the tx id committed with a final non-VALID
    code, or the gateway refused for a reason no retry fixes (``dead_letter``: an operator must look).

    ``envelope_refused``: the orderer refused the envelope at its first Submit, so it was never ordered and
    is dropped (the tx id stays for the record); a requeue then makes a new transaction."""
    changes: dict[str, Any] = {
        "status": CommandStatus.FAILED, "error_message": error[:4000], "chaincode_code": chaincode_code,
        "dead_lettered": dead_letter, "locked_by": "", "locked_until": None, "lease_token": None,
    }
    if validation_code:
        changes.update(validation_code=validation_code, block_number=block_number)
    if envelope_refused:
        changes["signed_envelope"] = None
    _fenced(command_id, worker_id, lease_token, failed=True, **changes)


def outbox_record_retry(
    *, command_id: int, worker_id: str, error: str, new_transaction: bool, validation_code: str = "",
    block_number: int | None = None, lease_token: uuid.UUID | None = None,
) -> bool:
    """A transient failure: schedule the next attempt with backoff, or dead-letter after ``max_attempts``.

    ``new_transaction``: the old tx id has a final non-VALID status (e.g. MVCC_READ_CONFLICT), so the next
    attempt makes a new proposal; otherwise the stored envelope is kept and resubmitted. Returns True when
    retried, False when dead-lettered.
    """
    command = OutboxCommand.objects.only("attempts", "max_attempts").get(id=command_id)
    changes: dict[str, Any] = {"error_message": error[:4000], "locked_by": "", "locked_until": None,
                               "lease_token": None}
    if validation_code:
        changes.update(validation_code=validation_code, block_number=block_number)
    if new_transaction:
        changes.update(status=CommandStatus.PENDING, tx_id="", signed_envelope=None)
    if command.attempts >= command.max_attempts:
        # A stored envelope stays on the row: an operator's requeue resumes it rather than doubling it.
        changes.update(status=CommandStatus.FAILED, dead_lettered=True,
                       error_message=f"gave up after {command.attempts} attempts: {error}"[:4000])
        _fenced(command_id, worker_id, lease_token, failed=True, **changes)
        return False
    changes["next_attempt_at"] = timezone.now() + timedelta(seconds=backoff_seconds(command.attempts))
    _fenced(command_id, worker_id, lease_token, **changes)
    return True


def outbox_requeue(*, command_ids: Iterable[int] | None = None, failed: bool = False) -> int:
    """Operators: give FAILED commands (``command_ids``, or every FAILED one with ``failed``) a fresh attempt
    budget, so that every dead letter can finish.

    A command whose stored envelope never received a validation code (its commit status was never learned)
    goes back to SUBMITTED and resumes with those bytes: it may have committed meanwhile, and a second
    transaction could move the money twice. Every other one starts a new transaction (new nonce, tx id and
    envelope): no envelope, an envelope the orderer refused, or a tx id burned by committing with any
    non-VALID code (``MVCC_READ_CONFLICT``, ``BAD_RWSET``, ``ENDORSEMENT_POLICY_FAILURE``…), which CommitStatus
    would report again for ever (docs/FABRIC_GATEWAY.md §4: a burned tx id never commits again)."""
    rows = OutboxCommand.objects.filter(status=CommandStatus.FAILED)
    if command_ids is not None:
        rows = rows.filter(id__in=list(command_ids))
    elif not failed:
        return 0
    now = timezone.now()
    common = {"attempts": 0, "max_attempts": settings.OUTBOX_MAX_ATTEMPTS, "next_attempt_at": now,
              "dead_lettered": False, "locked_by": "", "locked_until": None, "lease_token": None,
              "updated_at": now}
    with transaction.atomic():
        resumed = rows.exclude(tx_id="").filter(signed_envelope__isnull=False, validation_code="").update(
            status=CommandStatus.SUBMITTED, **common)
        fresh = rows.update(status=CommandStatus.PENDING, tx_id="", signed_envelope=None, chaincode_code="",
                            **common)
        notify_submitters()
    return resumed + fresh


