"""The outbox submitter: one attempt at one leased command (:func:`process_command`), and the engine that
claims commands into leases and keeps several of them in flight (:class:`Submitter`).

Exactly-once effect (docs/DESIGN.md §3, docs/FABRIC_GATEWAY.md §4–5):

- A command without a stored transaction gets a *fresh* signed proposal per attempt (a stored proposal goes
  stale after 15 minutes), is endorsed, and its tx id and signed envelope are stored on the row **before**
  Submit. A crash before that store loses only an endorsement that was never submitted.
- A command with a stored envelope (a retry, a crash, a lease taken over) resubmits the *same bytes* — a
  duplicate copy commits as DUPLICATE_TXID and changes nothing — and asks CommitStatus.
- A new proposal (new tx id) is made only once the old tx id has a final non-VALID status
  (MVCC_READ_CONFLICT / PHANTOM_READ_CONFLICT: retried; any other code: FAILED and dead-lettered).

Error classes: a chaincode ``[CODE]`` error at endorsement → FAILED at once with the code (a business answer,
not dead-lettered); UNAVAILABLE, DEADLINE_EXCEEDED, infrastructure ABORTED, commit-status timeouts and read
conflicts → retried with exponential backoff and jitter, dead-lettered after ``max_attempts``; refusals no retry
can fix (access denied, orderer 4xx, unbracketed chaincode failures) → FAILED and dead-lettered at once.

Threads (:class:`Submitter`): ``max_in_flight`` workers and two row writers (:class:`DbWriter`), each a
:class:`WatchedThread` whose loop logs and survives any error of one unit of work. A thread that dies anyway,
or stays busy on one unit longer than its calls' deadlines allow, makes :meth:`Submitter.health` (and so the
process's ``/livez``) fail, so that Kubernetes restarts the pod instead of leaving it frozen. Every wait on
another thread has a timeout (:class:`WriteTimeout`).

Test-only hooks, ignored unless ``DEBUG`` is on: ``GX_SUBMITTER_CRASH_AT`` = ``before_store`` (endorsed,
envelope not stored), ``after_endorse`` (envelope stored, not submitted) or ``after_submit`` (submitted, commit
status not asked) makes the process ``os._exit(137)`` at that point, like ``kill -9``;
``GX_SUBMITTER_FAULT`` = ``writer_dies`` / ``writer_hangs`` / ``worker_dies`` / ``worker_hangs`` makes the
row writers (or the workers) die at, or hang in, their first unit of work.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db import transaction as db_transaction
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

from fabric_client import EndorseError, SubmitError
from fabric_client.errors import CommitStatusError
from outbox.commit_watch import FROM_BLOCKS, FROM_QUERY, CommitWatcher, Expected
from outbox.models import CommandStatus, CommandType, OutboxCommand
from outbox.services import (
    LeaseLost,
    outbox_claim_commands,
    outbox_record_committed,
    outbox_record_committed_many,
    outbox_record_endorsed,
    outbox_record_endorsed_many,
    outbox_record_failed,
    outbox_record_retry,
    outbox_release,
    outbox_renew_leases,
    relaxed_commit,
)

logger = logging.getLogger("outbox.submitter")
T = TypeVar("T")


class Write(Protocol):
    """How a unit of work applies a row write: directly, or through the batching :class:`DbWriter`."""

    def __call__(self, function: Callable[..., T], /, **kwargs: Any) -> T: ...


class Post(Protocol):
    """How a unit of work hands over a row write it need not wait for: ``recorded(error)`` is called once the
    write was applied (``error`` None) or failed (:class:`LeaseLost`, a database error), on the writer's thread."""

    def __call__(self, function: Callable[..., Any], recorded: Callable[[BaseException | None], None], /,
                 **kwargs: Any) -> None: ...


CRASH_ENV = "GX_SUBMITTER_CRASH_AT"
FAULT_ENV = "GX_SUBMITTER_FAULT"
RETRY_AS_NEW_TRANSACTION = ("MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT")

PROCESSED = Counter(
    "outbox_commands_processed_total",
    "Command attempts by outcome: success (committed VALID), failed (final), retried (scheduled again).",
    ["status"],
)
for _status in ("success", "failed", "retried"):
    PROCESSED.labels(_status)
SUCCEEDED = PROCESSED.labels("success")
DURATION = Histogram(
    "outbox_processing_duration_seconds",
    "Per committed command, seconds from enqueue to commit.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
QUEUE_DEPTH = Gauge("outbox_queue_depth", "Unfinished commands (PENDING or SUBMITTED).", multiprocess_mode="max")
OLDEST_PENDING = Gauge("outbox_oldest_pending_age_seconds", "Age of the oldest unfinished command.",
                       multiprocess_mode="max")
DEAD_LETTERS = Gauge("outbox_dead_letters", "Dead-lettered commands waiting for an operator.",
                     multiprocess_mode="max")
IN_FLIGHT = Gauge("outbox_in_flight", "Commands this submitter is working on now.", multiprocess_mode="sum")


def crash_point(name: str) -> None:
    """Test-only: die here, without any cleanup, when GX_SUBMITTER_CRASH_AT names this point (DEBUG only)."""
    if os.environ.get(CRASH_ENV) == name and settings.DEBUG:
        logger.warning("crash hook %s: exiting", name)
        os._exit(137)


class ThreadKilled(BaseException):
    """Test-only: ends a thread past every ``except Exception`` guard, as an error no guard expects would."""


def fault_point(name: str) -> None:
    """Test-only (DEBUG): ``GX_SUBMITTER_FAULT=<name>_dies`` kills the calling thread here,
    ``<name>_hangs`` blocks it for ever."""
    if not settings.DEBUG:
        return
    fault = os.environ.get(FAULT_ENV, "")
    if fault == f"{name}_dies":
        raise ThreadKilled(f"fault hook: {threading.current_thread().name} dies")
    if fault == f"{name}_hangs":
        logger.warning("fault hook: %s hangs", threading.current_thread().name)
        threading.Event().wait()


_current = threading.local()


class WatchedThread:
    """A long-lived daemon thread whose health the process reports: alive, and not busy on one unit of work
    for longer than ``stuck_after`` seconds (waiting for work, or for a Fabric slot, is not being busy).

    ``loop(watch)`` runs for the life of the process and marks each unit with ``watch.busy()``; it guards its
    units itself. Whatever still ends it is logged here, and :meth:`problem` says so from then on.
    """

    def __init__(self, name: str, loop: Callable[[WatchedThread], None], *, stuck_after: float) -> None:
        self.name = name
        self.stuck_after = stuck_after
        self._loop = loop
        self._busy_since: float | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        _current.watch = self
        try:
            self._loop(self)
        except BaseException:
            logger.critical("thread %s died", self.name, exc_info=True, extra={"thread_name": self.name})
        else:
            logger.critical("thread %s ended", self.name, extra={"thread_name": self.name})

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        self._busy_since = time.monotonic()
        try:
            yield
        finally:
            self._busy_since = None

    def problem(self) -> str | None:
        """None when healthy; otherwise what is wrong, for ``/livez``."""
        if not self.thread.is_alive():
            return f"{self.name} is dead"
        since = self._busy_since
        if since is not None and time.monotonic() - since > self.stuck_after:
            return f"{self.name} is stuck ({time.monotonic() - since:.0f}s on one unit)"
        return None


@contextlib.contextmanager
def _waiting() -> Iterator[None]:
    """The current watched thread waits for other threads (a free Fabric slot): not stuck meanwhile."""
    watch: WatchedThread | None = getattr(_current, "watch", None)
    if watch is None or watch._busy_since is None:
        yield
        return
    watch._busy_since = None
    try:
        yield
    finally:
        watch._busy_since = time.monotonic()


def chaincode_call(command: OutboxCommand) -> tuple[str, list[str]]:
    """The qualified chaincode function and its string arguments for a command (docs/CHAINCODE.md)."""
    p = command.payload
    kind = CommandType(command.command_type)
    if kind == CommandType.CREATE_USER:
        return "IdentityContract:CreateUser", [p["user_id"], p["biometric_hash"], p["nationality"], str(p["age"])]
    if kind == CommandType.TRANSFER:
        return "TokenomicsContract:TransferWithFees", [
            p["from_user_id"], p["to_user_id"], str(p["amount_qirat"]), p.get("tx_type", ""),
            p.get("remark", ""), command.idempotency_key,
        ]
    if kind == CommandType.FREEZE_WALLET:
        return "TokenomicsContract:FreezeWallet", [p["user_id"], p["reason"]]
    return "TokenomicsContract:UnfreezeWallet", [p["user_id"]]


@dataclass(frozen=True)
class Fabric:
    """What the submitter needs of ``fabric_client``: the gateway (to rebuild stored envelopes), the network
    (commit status) and the GX chaincode (new proposals)."""

    gateway: Any
    network: Any
    contract: Any

    @classmethod
    def from_settings(cls) -> Fabric:
        from gxbackend.fabric import contract_from_settings, gateway_from_settings

        gateway = gateway_from_settings()
        return cls(gateway, gateway.network(settings.FABRIC_CHANNEL), contract_from_settings(gateway))


def _decode_result(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode()) if raw else None
    except (UnicodeDecodeError, ValueError):
        return {"raw": raw.hex()}


def _release_db() -> None:
    # Several commands are in flight per process, each waiting about a block interval on Fabric: holding a
    # connection per waiting thread would exhaust PostgreSQL's connection slots across replicas. (Inside an
    # atomic block, i.e. a test's transaction, closing would break it.) Called several times per command,
    # mostly by threads that never opened one: one lookup of the thread's connection, nothing more.
    own = connections[DEFAULT_DB_ALIAS]
    if own.connection is not None and not own.in_atomic_block:
        own.close()


def _direct(function: Callable[..., T], **kwargs: Any) -> T:
    return function(**kwargs)


def _nothing() -> None:
    return None


class FabricSlots:
    """``size`` Fabric transactions in flight at most: a semaphore on a C queue of tokens (a
    ``threading.Semaphore`` is a Condition written in Python: its acquire and release were a visible share of
    the workers' CPU per command, bench/outbox.py)."""

    def __init__(self, size: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(size):
            self._tokens.put(None)

    def acquire(self) -> None:
        self._tokens.get()

    def release(self) -> None:
        self._tokens.put(None)


class _Slot:
    """One of the process's ``OUTBOX_MAX_IN_FLIGHT`` Fabric transactions, held from endorsement (or resubmit)
    until the commit status is known, and released exactly once."""

    def __init__(self, semaphore: FabricSlots | None) -> None:
        self._semaphore = semaphore
        self._held = False

    def acquire(self) -> None:
        if self._semaphore is not None:
            with _waiting():
                self._semaphore.acquire()
            self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()  # type: ignore[union-attr]


def process_command(
    command: OutboxCommand | int, *, worker_id: str, fabric: Fabric, write: Write = _direct,
    fabric_slots: FabricSlots | None = None, endorsing: Tally | None = None, post: Post | None = None,
    commits: CommitWatcher | None = None,
) -> str:
    """One attempt at a command leased to ``worker_id`` (the row as claimed, or its id); returns what became
    of it: ``committed``, ``failed`` (final; dead-lettered or not), ``retried`` or ``lost`` (lease taken over).

    ``fabric_slots`` bounds the transactions in flight on Fabric; the outcome is recorded after the slot is
    released, so database latency does not count against the in-flight limit. ``endorsing`` counts the
    attempts between the start of an endorsement and its envelope stored (the store writer's batches wait for
    those, see :class:`DbWriter`). ``post`` (when given) takes the write of a VALID commit without waiting
    for it: the thread goes on to its next command, and ``committed`` means committed on the chain, recorded
    soon after (until then the row keeps its lease and envelope: if the record is lost, the lease runs out and
    the next attempt resubmits the same envelope, and CommitStatus says VALID again). ``commits`` (when
    given) answers the commit status of a first submission from its filtered-block stream instead of a
    CommitStatus call (:mod:`outbox.commit_watch`; CommitStatus whenever it cannot answer).
    """
    fetched = not isinstance(command, OutboxCommand)
    if fetched:
        command = OutboxCommand.objects.get(id=command)
    command_id = command.id
    if command.locked_by != worker_id or command.status not in (CommandStatus.PENDING, CommandStatus.SUBMITTED):
        return "lost"
    # Every write is fenced by this claim: if the row was claimed again meanwhile, it writes nothing.
    lease: dict[str, Any] = {"worker_id": worker_id, "lease_token": command.lease_token}
    log = {"command_id": str(command.command_id), "request_id": command.request_id}
    # Only a caller that reads or writes here uses this thread's connection (a Submitter's writes go through
    # its writers, and each of its threads lets go of the connection after each command).
    release_db = _release_db if fetched or write is _direct else _nothing
    release_db()
    slot = _Slot(fabric_slots)
    slot.acquire()
    try:
        commit = None  # the CommitStatus request that Submit returns (signed only if asked)
        expected: Expected | None = None  # the block stream's answer to come, for a first submission
        if command.status == CommandStatus.SUBMITTED and command.tx_id and command.signed_envelope:
            transaction = fabric.gateway.transaction_from_bytes(bytes(command.signed_envelope))
            try:
                commit = transaction.submit()
            except SubmitError as exc:
                # An earlier copy may be ordered already: CommitStatus, not this error, says what happened.
                logger.info("resubmitting %s failed: %s", transaction.transaction_id, exc,
                            extra={**log, "tx_id": transaction.transaction_id})
        else:
            function, args = chaincode_call(command)
            proposal = fabric.contract.new_proposal(function, args=args)
            refused: EndorseError | None = None
            with endorsing.counted() if endorsing is not None else contextlib.nullcontext():
                try:
                    transaction = proposal.endorse()
                except EndorseError as exc:
                    refused = exc
                else:
                    crash_point("before_store")
                    write(outbox_record_endorsed, command_id=command_id, **lease, tx_id=transaction.transaction_id,
                          envelope=transaction.bytes())
            if refused is not None:
                slot.release()
                return _endorse_failed(command, lease, refused, write)
            release_db()
            crash_point("after_endorse")
            if commits is not None:  # before Submit: the block carrying it cannot pass by unseen
                expected = commits.expect(transaction.transaction_id)
            try:
                commit = transaction.submit()
            except SubmitError as exc:
                if commits is not None:
                    commits.forget(transaction.transaction_id)
                slot.release()
                if exc.retryable:  # ambiguous: resend the same envelope next time
                    return _retry(command, lease, write=write, error=f"submit: {exc}", new_transaction=False)
                # The first Submit of a new envelope was refused: it was never ordered, so a requeue may make
                # a new transaction.
                write(outbox_record_failed, command_id=command_id, **lease, dead_letter=True, envelope_refused=True,
                      error=f"orderer refused the transaction: {exc}")
                PROCESSED.labels("failed").inc()
                return "failed"
            crash_point("after_submit")
        tx_id = transaction.transaction_id
        log["tx_id"] = tx_id
        try:
            status = expected.wait(settings.FABRIC_COMMIT_STATUS_TIMEOUT) if expected is not None else None
            if status is not None:
                FROM_BLOCKS.inc()
            else:
                if commits is not None:
                    commits.forget(tx_id)
                if commit is None:
                    commit = fabric.network.new_commit(tx_id)
                status = commit.status(timeout=settings.FABRIC_COMMIT_STATUS_TIMEOUT)
                FROM_QUERY.inc()
        except CommitStatusError as exc:
            slot.release()
            if exc.retryable:
                return _retry(command, lease, write=write, error=f"commit status: {exc}", new_transaction=False)
            write(outbox_record_failed, command_id=command_id, **lease, dead_letter=True,
                  error=f"commit status refused: {exc}")
            PROCESSED.labels("failed").inc()
            return "failed"
        slot.release()
        if status.successful:
            return _committed(command, lease, status.block_number, transaction.result, log, write, post)
        if status.code_name in RETRY_AS_NEW_TRANSACTION:
            return _retry(command, lease, write=write, error=f"transaction {tx_id} committed as {status.code_name}",
                          new_transaction=True, validation_code=status.code_name, block_number=status.block_number)
        # Any other code burned the tx id for good: an operator's requeue makes a new transaction.
        write(outbox_record_failed, command_id=command_id, **lease, dead_letter=True,
              error=f"transaction {tx_id} committed as {status.code_name}",
              validation_code=status.code_name, block_number=status.block_number)
        PROCESSED.labels("failed").inc()
        return "failed"
    except LeaseLost:
        logger.warning("lease lost; another submitter carries on", extra=log)
        return "lost"
    finally:
        slot.release()
        release_db()


def _committed(command: OutboxCommand, lease: dict[str, Any], block_number: int, result: bytes,
               log: dict[str, Any], write: Write, post: Post | None) -> str:
    created_at = command.created_at

    def recorded(error: BaseException | None) -> None:
        if error is None:
            SUCCEEDED.inc()
            DURATION.observe((timezone.now() - created_at).total_seconds())
            logger.info("command committed in block %s", block_number, extra=log)
        elif isinstance(error, LeaseLost):
            logger.warning("lease lost; another submitter carries on", extra=log)
        else:  # the lease runs out, and the next attempt finds the same transaction VALID and records it
            logger.error("recording the commit in block %s failed: %s: %s", block_number, type(error).__name__,
                         error, extra=log)

    kwargs = {"command_id": command.id, **lease, "block_number": block_number, "result": _decode_result(result)}
    if post is not None:
        post(outbox_record_committed, recorded, **kwargs)
        return "committed"
    write(outbox_record_committed, **kwargs)  # LeaseLost: "lost"
    recorded(None)
    return "committed"


def _endorse_failed(command: OutboxCommand, lease: dict[str, Any], exc: EndorseError, write: Write) -> str:
    if exc.chaincode_code:
        write(outbox_record_failed, command_id=command.id, **lease, chaincode_code=exc.chaincode_code,
              error=_chaincode_message(exc))
        PROCESSED.labels("failed").inc()
        return "failed"
    if exc.retryable or exc.duplicate_transaction or exc.stale_proposal:
        # Nothing was stored or submitted: the next attempt builds and signs a fresh proposal.
        return _retry(command, lease, write=write, error=f"endorse: {exc}", new_transaction=True)
    write(outbox_record_failed, command_id=command.id, **lease, dead_letter=True, error=f"endorse: {exc}")
    PROCESSED.labels("failed").inc()
    return "failed"


def _chaincode_message(exc: EndorseError) -> str:
    for text in (*(d.message for d in exc.details), exc.message):
        if f"[{exc.chaincode_code}]" in text:
            return text[text.index(f"[{exc.chaincode_code}]"):]
    return str(exc)


def _retry(command: OutboxCommand, lease: dict[str, Any], error: str, *, new_transaction: bool,
           write: Write = _direct, validation_code: str = "", block_number: int | None = None) -> str:
    retried = write(outbox_record_retry, command_id=command.id, **lease, error=error,
                    new_transaction=new_transaction, validation_code=validation_code,
                    block_number=block_number)
    PROCESSED.labels("retried" if retried else "failed").inc()
    logger.info("command %s: %s", "retried" if retried else "dead-lettered", error,
                extra={"command_id": str(command.command_id)})
    return "retried" if retried else "failed"


# A row writer keeps its database connection between batches, and lets it go after this long without work.
IDLE_RELEASE_SECONDS = 1.0


class WriteTimeout(TimeoutError):
    """A row write was not applied within the writer's timeout (its thread is stuck, dead or far behind)."""


class Tally:
    """A count of threads inside a section (:meth:`counted`), readable from another thread."""

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n

    @contextlib.contextmanager
    def counted(self) -> Iterator[None]:
        self.add(1)
        try:
            yield
        finally:
            self.add(-1)


class _Reply:
    """The answer to one queued write, handed from the writer to the waiting caller through a lock (cheaper
    than a ``concurrent.futures.Future``, whose Condition cost the workers as much as the write's statement)."""

    __slots__ = ("_ready", "done", "error", "recorded", "result")

    def __init__(self, recorded: Callable[[BaseException | None], None] | None = None) -> None:
        self._ready = _thread.allocate_lock()
        self._ready.acquire()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.recorded = recorded  # a posted write's callback: nobody waits for this reply

    def set(self, result: Any, error: BaseException | None) -> None:
        if self.done:
            return
        self.result, self.error, self.done = result, error, True
        if self.recorded is None:
            self._ready.release()
            return
        try:
            self.recorded(error)
        except Exception:  # a callback's bug must not end the writer's thread
            logger.exception("submitter writer: the callback of a posted write failed")

    def wait(self, timeout: float) -> bool:
        return self._ready.acquire(timeout=timeout)


class DbWriter:
    """One thread that applies the submitter's row writes in batches: every write pending at that moment
    goes into one transaction, so N commands finishing together cost one commit (and one WAL flush) instead
    of N. With ``linger``, a batch waits that long for more writes before it is written: the writes of one
    block's commands, or of one claim's endorsements, arrive spread over milliseconds, and a statement per
    write or two cost the database and this process more CPU than the writes themselves (bench/outbox.py).
    ``expected`` (when given) says how many writes are on their way: the batch waits only while more are
    expected than it holds, so a write with nothing behind it goes at once.

    Callers block until their write is committed (:meth:`__call__`), so "envelope stored before Submit" still
    holds, or hand it over and are called back (:meth:`post`). A caller never waits longer than ``timeout``
    (:class:`WriteTimeout`; the write may still be applied later, fenced by the lease).
    A batch is durable when any write in it is (the envelope store); the others relax the flush (see
    ``outbox.services.relaxed_commit``). When a batch fails, its writes are applied again one by one, so
    one failing write does not fail (and burn an attempt of) the innocent commands batched with it.
    """

    def __init__(self, *, name: str = "submitter-db-writer", timeout: float = 60.0, stuck_after: float = 60.0,
                 linger: float = 0.0, expected: Callable[[], int] | None = None) -> None:
        self.timeout = timeout
        self.linger = linger
        self.expected = expected
        self._queue: queue.SimpleQueue[_PendingWrite] = queue.SimpleQueue()
        self.watch = WatchedThread(name, self._run, stuck_after=stuck_after)

    def __call__(self, function: Callable[..., T], /, **kwargs: Any) -> T:
        reply = _Reply()
        self._queue.put(_PendingWrite(kwargs["command_id"], function, kwargs, function is outbox_record_endorsed,
                                      reply))
        if not reply.wait(self.timeout):
            raise WriteTimeout(f"{function.__name__} for command {kwargs['command_id']} was not written within "
                               f"{self.timeout:g}s ({self.watch.problem() or 'writer busy'})")
        if reply.error is not None:
            raise reply.error
        return reply.result

    def post(self, function: Callable[..., Any], recorded: Callable[[BaseException | None], None], /,
             **kwargs: Any) -> None:
        """Queues a write without waiting for it; ``recorded(error)`` follows on this writer's thread."""
        self._queue.put(_PendingWrite(kwargs["command_id"], function, kwargs, function is outbox_record_endorsed,
                                      _Reply(recorded)))

    def _run(self, watch: WatchedThread) -> None:
        try:
            self._loop(watch)
        finally:  # a writer that dies anyway lets go of its connection
            _close_db_quietly()

    def _loop(self, watch: WatchedThread) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=IDLE_RELEASE_SECONDS)]
            except queue.Empty:  # idle: no connection pinned meanwhile
                _close_db_quietly()
                batch = [self._queue.get()]
            with watch.busy():
                self._gather(batch)
                try:
                    fault_point("writer")
                    outcomes = self._apply(batch)
                except Exception as exc:  # a bug here must not end the thread: the callers learn it
                    logger.exception("submitter writer: a batch of %d write(s) failed", len(batch))
                    outcomes = [(item.reply, None, exc) for item in batch]
                for reply, result, error in outcomes:
                    reply.set(result, error)

    def _gather(self, batch: list[_PendingWrite]) -> None:
        """Adds to ``batch`` every write queued now, and those that arrive while it lingers."""
        self._drain(batch)
        if not self.linger:
            return
        if self.expected is None:
            time.sleep(self.linger)  # one wake-up, not one per write that arrives meanwhile
            self._drain(batch)
            return
        deadline = time.monotonic() + self.linger
        while len(batch) < self.expected() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, _LINGER_STEP))
            self._drain(batch)

    def _drain(self, batch: list[_PendingWrite]) -> None:
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _apply(self, batch: list[_PendingWrite]) -> list[tuple[_Reply, Any, BaseException | None]]:
        # The writer keeps its database connection between batches (checking one out of the pool and back per
        # batch cost more CPU than the batch's statements); after any failure it lets it go, since the failure
        # may have broken it, and when idle (_loop).
        batch.sort(key=lambda item: item.command_id)
        try:
            return self._in_one_transaction(batch)
        except Exception as exc:
            _close_db_quietly()
            if len(batch) == 1:
                return [(batch[0].reply, None, exc)]
            logger.warning("a batch of %d writes failed (%s: %s); writing them one by one", len(batch),
                           type(exc).__name__, exc)
            outcomes = [outcome for item in batch for outcome in self._in_one_transaction([item], alone=True)]
            if any(error is not None and not isinstance(error, LeaseLost) for _, _, error in outcomes):
                _close_db_quietly()
            return outcomes

    @staticmethod
    def _in_one_transaction(batch: list[_PendingWrite], *, alone: bool = False,
                            ) -> list[tuple[_Reply, Any, BaseException | None]]:
        """Every write of ``batch`` in one transaction: the writes every command makes (envelope stored,
        committed) as one statement per kind for all the commands, the others one by one."""
        outcomes: list[tuple[_Reply, Any, BaseException | None]] = []
        many = _MANY.get(batch[0].function)
        if many is not None and all(item.function is batch[0].function for item in batch):
            # The common batch, one kind of write for every command in it: a single statement, committed on its
            # own (durable for envelope stores, relaxed for commits; see outbox.services), no transaction around.
            try:
                written = many([item.kwargs for item in batch])
            except Exception as exc:
                if not alone:
                    raise
                return [(batch[0].reply, None, exc)]
            return [_many_outcome(item, written) for item in batch]
        try:
            with db_transaction.atomic():
                if not any(item.durable for item in batch):
                    relaxed_commit()
                for function, many_of_kind in _MANY.items():
                    writes = [item for item in batch if item.function is function]
                    if writes:
                        written = many_of_kind([item.kwargs for item in writes])
                        outcomes.extend(_many_outcome(item, written) for item in writes)
                for item in batch:
                    if item.function in _MANY:
                        continue
                    try:
                        outcomes.append((item.reply, item.function(**item.kwargs), None))
                    except LeaseLost as exc:  # changed nothing: the batch goes on
                        outcomes.append((item.reply, None, exc))
        except Exception as exc:
            if not alone:
                raise
            return [(batch[0].reply, None, exc)]
        return outcomes


def _many_outcome(item: _PendingWrite, written: set[int]) -> tuple[_Reply, Any, BaseException | None]:
    if item.command_id in written:
        return item.reply, None, None
    return item.reply, None, LeaseLost.of(item.command_id, item.kwargs["worker_id"])


class _PendingWrite(NamedTuple):
    command_id: int
    function: Callable[..., Any]
    kwargs: dict[str, Any]
    durable: bool
    reply: _Reply


_LINGER_STEP = 0.002  # how often a lingering batch looks again when it expects more writes


# Writes the writer applies for a whole batch in one statement (the rows are locked in the statement's join
# order; every other writer of these rows locks with SKIP LOCKED or works on rows of its own lease, so this
# cannot deadlock; if it ever did, the batch would be written again one by one).
_MANY: dict[Callable[..., Any], Callable[[list[dict[str, Any]]], set[int]]] = {
    outbox_record_endorsed: outbox_record_endorsed_many,
    outbox_record_committed: outbox_record_committed_many,
}


def _close_db_quietly() -> None:
    try:
        _release_db()
    except Exception:  # the connection is gone either way; the next use opens another
        logger.exception("submitter: closing a database connection failed")


class Submitter:
    """Claims due commands into leases and keeps up to ``max_in_flight`` Fabric transactions in flight.

    The owner calls :meth:`submit_once` in its loop (it also renews leases), :meth:`health` for ``/livez`` and
    :meth:`drain` on shutdown. ``wake`` is called whenever a command finishes, since that may make the next
    command of its aggregate due. Besides the commands in flight it holds up to ``prefetch`` claimed ones
    ready, so a thread that finishes starts the next transaction at once instead of waiting for the next claim
    (leases cover them too). With ``block_stream``, the commit statuses of first submissions come from one
    filtered-block stream (:mod:`outbox.commit_watch`) instead of a signed CommitStatus call each.
    """

    def __init__(self, fabric: Fabric, *, worker_id: str, max_in_flight: int, batch_size: int,
                 lease_seconds: float, wake: Callable[[], None] = lambda: None, prefetch: int | None = None,
                 block_stream: bool = False) -> None:
        self.fabric = fabric
        self.worker_id = worker_id
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.wake = wake
        # A prefetch as large as the in-flight limit: claims of half that many rows (each claim is a transaction
        # and a Python round of its own; with a quarter, claims were a tenth of the process's CPU per command).
        self.max_claimed = max_in_flight + (prefetch if prefetch is not None else max_in_flight)
        self.min_claim = max(1, min(batch_size, (self.max_claimed - max_in_flight) // 2))
        self.claiming = True
        # A write that waits longer than a lease is pointless (the lease may be gone); a writer busy on one
        # batch for longer than the heartbeat timeout is stuck (a batch takes milliseconds).
        heartbeat = settings.WORKER_HEARTBEAT_TIMEOUT
        # Envelope stores (durable, on the path of every transaction in flight) never queue behind outcomes.
        # Both batch what arrives within OUTBOX_WRITE_LINGER_MS; an envelope store waits only while other
        # endorsements of this process are on their way (a lone command's store goes at once).
        linger = settings.OUTBOX_WRITE_LINGER_MS / 1000
        self._endorsing = Tally()
        self._store_writer = DbWriter(name="submitter-store-writer", timeout=lease_seconds, stuck_after=heartbeat,
                                      linger=linger, expected=lambda: self._endorsing.value)
        self._outcome_writer = DbWriter(name="submitter-outcome-writer", timeout=lease_seconds,
                                        stuck_after=heartbeat, linger=linger)
        self._queue: queue.SimpleQueue[OutboxCommand] = queue.SimpleQueue()
        self._in_flight: set[int] = set()
        self._posted = Tally()  # commits handed to the outcome writer and not yet recorded
        self._lock = threading.Lock()
        self._renewed_at = time.monotonic()
        self.fabric_slots = FabricSlots(max_in_flight)
        self.commits = CommitWatcher(lambda: fabric.network.filtered_blocks(newest=True)) if block_stream else None
        # The longest one unit may legitimately take: each Fabric call ends by its deadline and each of its
        # (at most three) row writes by the write timeout; waiting for a Fabric slot does not count. With the
        # block stream, a status it did not deliver in time is asked of CommitStatus after it.
        status_waits = 2 if self.commits is not None else 1
        unit_seconds = (settings.FABRIC_ENDORSE_TIMEOUT + settings.FABRIC_SUBMIT_TIMEOUT
                        + status_waits * settings.FABRIC_COMMIT_STATUS_TIMEOUT + 3 * lease_seconds + heartbeat)
        # A thread per Fabric slot: a thread hands a VALID commit's record to the outcome writer and takes its
        # next command at once (post); only the rarer outcomes it waits for (failures, retries) leave its slot
        # idle meanwhile. Spare threads cost CPU per command: with twice as many threads as slots, each slot
        # changed hands through a sleeping thread, and thread switches were a third of the process's CPU
        # (bench/outbox.py, perf). Daemon threads: one stuck in a gRPC call must not keep the process alive
        # after a shutdown that handed its lease back.
        self._workers = [WatchedThread(f"submitter-worker-{n}", self._work, stuck_after=unit_seconds)
                         for n in range(max_in_flight)]

    def write(self, function: Callable[..., T], /, **kwargs: Any) -> T:
        writer = self._store_writer if function is outbox_record_endorsed else self._outcome_writer
        return writer(function, **kwargs)

    def post(self, function: Callable[..., Any], recorded: Callable[[BaseException | None], None], /,
             **kwargs: Any) -> None:
        """A commit's record, written without a worker waiting for it; the next command of its aggregate becomes
        due once it is written, so the claim loop is woken then."""
        def then(error: BaseException | None) -> None:
            try:
                recorded(error)
            finally:
                self._posted.add(-1)
                self._wake_if_room()

        self._posted.add(1)
        self._outcome_writer.post(function, then, **kwargs)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def health(self) -> tuple[bool, str]:
        """``(healthy, detail)``: every writer and worker thread (and the block stream's) alive, none stuck on one
        unit."""
        threads = [self._store_writer.watch, self._outcome_writer.watch, *self._workers]
        problems = [problem for thread in threads if (problem := thread.problem())]
        if self.commits is not None and (problem := self.commits.health()):
            problems.append(problem)
        if problems:
            return False, "; ".join(problems)
        return True, f"{len(threads) + (self.commits is not None)} submitter threads ok"

    def submit_once(self) -> bool:
        """Claims what fits into the free in-flight slots; True when it claimed something (call again)."""
        self.renew_leases()
        with self._lock:
            mine = set(self._in_flight)
        free = self.max_claimed - len(mine)
        # Claim a batch, not one row per finished command (each claim is a transaction): below this much room,
        # as many claimed commands still wait for a Fabric slot, so no slot idles meanwhile.
        if not self.claiming or free < self.min_claim:
            return False
        commands = outbox_claim_commands(worker_id=self.worker_id, limit=min(self.batch_size, free),
                                         lease_seconds=self.lease_seconds, exclude_ids=mine)
        with self._lock:
            self._in_flight.update(c.id for c in commands)
            IN_FLIGHT.set(len(self._in_flight))
        for command in commands:
            self._queue.put(command)
        return bool(commands)

    def renew_leases(self, *, force: bool = False) -> None:
        """Extends the leases of in-flight commands every third of the lease (a database error is logged and
        the next renewal tries again)."""
        if not force and time.monotonic() - self._renewed_at < self.lease_seconds / 3:
            return
        self._renewed_at = time.monotonic()
        with self._lock:
            ids = set(self._in_flight)
        if not ids:
            return
        try:
            held = outbox_renew_leases(worker_id=self.worker_id, ids=ids, lease_seconds=self.lease_seconds)
        except DatabaseError as exc:
            logger.warning("renewing %d lease(s) failed: %s", len(ids), exc)
            return
        with self._lock:  # a command that finished meanwhile holds no lease, and lost none
            lost = (ids - held) & self._in_flight
        if lost:
            logger.warning("leases lost on %d command(s): %s", len(lost), sorted(lost))

    def drain(self, grace_seconds: float) -> int:
        """Stops claiming, waits up to ``grace_seconds`` for in-flight commands, then hands back the leases of
        those still running (their late writes are fenced off). Returns how many were handed back."""
        self.claiming = False
        deadline = time.monotonic() + grace_seconds
        while (self.in_flight or self._posted.value) and time.monotonic() < deadline:
            self.renew_leases()
            time.sleep(0.05)
        if self.commits is not None:  # whoever still waits on it asks CommitStatus (fenced by its lease)
            self.commits.stop()
        with self._lock:
            left = set(self._in_flight)
        if not left:
            return 0
        released = outbox_release(worker_id=self.worker_id, ids=left)
        logger.info("handed back %d lease(s) at shutdown", released)
        return released

    def _work(self, watch: WatchedThread) -> None:
        while True:
            command = self._queue.get()
            with watch.busy():
                try:
                    self._attempt(command)
                finally:
                    self._finished(command.id)

    def _attempt(self, command: OutboxCommand) -> None:
        command_id = command.id
        try:
            fault_point("worker")
            if self.claiming:
                process_command(command, worker_id=self.worker_id, fabric=self.fabric, write=self.write,
                                fabric_slots=self.fabric_slots, endorsing=self._endorsing, post=self.post,
                                commits=self.commits)
            else:  # shutting down before it started: hand it back at once
                outbox_release(worker_id=self.worker_id, ids=[command_id])
        except Exception as exc:
            logger.exception("command %s: unexpected error", command_id)
            try:
                retried = self.write(outbox_record_retry, command_id=command_id, worker_id=self.worker_id,
                                     lease_token=command.lease_token, error=f"{type(exc).__name__}: {exc}",
                                     new_transaction=False)
                PROCESSED.labels("retried" if retried else "failed").inc()
            except Exception:  # the lease expires and another attempt follows
                logger.exception("command %s: could not record the error", command_id)

    def _wake_if_room(self) -> None:
        """Wakes the claim loop when a claim would claim something (a finished command, or a recorded commit
        that makes the next command of its aggregate due): a wake-up per command, each a thread switch and a
        round of the loop, cost more CPU than the claims (bench/outbox.py)."""
        with self._lock:
            room = self.max_claimed - len(self._in_flight)
        if room >= self.min_claim:
            self.wake()

    def _finished(self, command_id: int) -> None:
        """Never raises: first of all the row leaves this process's flight, so its lease is no longer renewed
        and it can be claimed again (by anyone) once the lease runs out, whatever the cleanup does after."""
        with self._lock:
            self._in_flight.discard(command_id)
            IN_FLIGHT.set(len(self._in_flight))
        for step in (_release_db, self._wake_if_room):
            try:
                step()
            except Exception:
                logger.exception("command %s: cleanup after the attempt failed", command_id)
