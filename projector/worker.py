"""The projector's loop state: leadership, the event stream, chain-height polling and retry backoff.

``manage.py run_projector`` calls :meth:`Projector.step` as its unit of work (docs/STYLE.md convention 1):

- standby: try the advisory lock; when it is won, read the checkpoint and lead.
- leader: poll the chain height every ``PROJECTOR_HEIGHT_POLL_SECONDS`` (stored on the checkpoint for the
  API's /readyz); keep one ChaincodeEvents stream open from the checkpoint, read by a thread into a bounded
  queue (the next blocks arrive while the current ones are committed); apply per step the next block together
  with the blocks already queued behind it (up to ``MAX_BATCH_BLOCKS`` / ``MAX_BATCH_EVENTS``) in one
  transaction with :func:`projector.services.apply_blocks`. Live, that is one block per transaction; catching
  up, it saves a commit, a checkpoint write and a wallet update per wallet and block.
- a malformed event or a failing handler: nothing past it is committed; the error is logged with its tx id,
  counted, stored on the checkpoint; the stream is closed and reopened from the checkpoint after an
  exponential backoff (with jitter) capped at ``PROJECTOR_RETRY_MAX_SECONDS``. Stream and Fabric errors back
  off the same way, and so does PostgreSQL being unreachable (a restart is an outage, not a stuck projector:
  nothing is stored as its error). Success resets the backoff.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError

from fabric_client.events import ChaincodeEventBlock
from projector import metrics, services
from projector.leader import LeaderLock

logger = logging.getLogger("projector")

_END = object()
DATABASE_ERRORS = (OperationalError, InterfaceError)
# Catching up: blocks already queued are applied together (one transaction, one statement per table).
MAX_BATCH_BLOCKS = 64
MAX_BATCH_EVENTS = 20_000


class StreamReader:
    """Reads an event stream on a daemon thread into a bounded queue; :meth:`close` cancels it."""

    def __init__(self, stream: Any, *, depth: int = 64, prepare: bool = False) -> None:
        self.stream = stream
        self.prepare = prepare  # fold each block on this thread (services.prepare_block) before queueing it
        self.items: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.held: Any = None  # an item taken by get_ready() and given back
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name="projector-stream", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for block in self.stream:
                if not self._put(services.prepare_block(block) if self.prepare else block):
                    return
        except Exception as exc:
            self._put(exc)
            return
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self.closed.is_set():
            try:
                self.items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def get(self, timeout: float) -> Any:
        """A block, an exception, ``_END`` or ``None`` when nothing arrived in time."""
        if self.held is not None:
            item, self.held = self.held, None
            return item
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_ready(self) -> Any:
        """Like :meth:`get` without waiting: ``None`` when nothing is queued."""
        return self.get(0) if self.held is not None else self._get_nowait()

    def _get_nowait(self) -> Any:
        try:
            return self.items.get_nowait()
        except queue.Empty:
            return None

    def give_back(self, item: Any) -> None:
        """Puts back the item :meth:`get_ready` returned; the next :meth:`get` returns it first."""
        assert self.held is None
        self.held = item

    def get_batch(self, timeout: float, *, max_blocks: int = MAX_BATCH_BLOCKS,
                  max_events: int = MAX_BATCH_EVENTS) -> Any:
        """A list of consecutive blocks (the first waited for up to ``timeout``, the others already queued),
        or what :meth:`get` returns when the first item is not a block."""
        item = self.get(timeout)
        if item is None or item is _END or isinstance(item, Exception):
            return item
        batch = [item]
        events = len(item.events)
        while len(batch) < max_blocks and events < max_events:
            item = self.get_ready()
            if item is None:
                break
            if item is _END or isinstance(item, Exception):
                self.give_back(item)
                break
            batch.append(item)
            events += len(item.events)
        return batch

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(Exception):  # a stream that is already broken needs no cancelling
            self.stream.close()


class Projector:
    def __init__(self, *, network_factory: Any, chaincode: str, name: str = services.CHECKPOINT_NAME,
                 wait_timeout: float = 0.5) -> None:
        self.network_factory = network_factory
        self.chaincode = chaincode
        self.name = name
        self.wait_timeout = wait_timeout
        self.lock = LeaderLock(name)
        self.network: Any = None
        self.reader: StreamReader | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.next_height_poll = 0.0
        self.height: int | None = None
        self.stuck = False
        self.last_error = ""
        self.last_event_at: float | None = None  # time.time() of the last applied event
        self.checkpoint: tuple[int, str] | None = None  # after the last apply
        metrics.LAST_EVENT_AGE.set_function(
            lambda: time.time() - self.last_event_at if self.last_event_at is not None else 0.0)

    @property
    def leading(self) -> bool:
        return self.lock.held

    # -- unit of work -------------------------------------------------------------------------------------
    def step(self) -> bool:
        """One unit: True when a block was applied (call again at once), False when idle or waiting."""
        if not self.leading:
            if not self.lock.try_acquire():
                metrics.IS_LEADER.set(0)
                return False
            try:
                checkpoint = services.get_checkpoint(self.name)
            except DATABASE_ERRORS as exc:  # lead once the checkpoint can be read; a standby meanwhile
                logger.warning("projector cannot read its checkpoint: database unavailable (%s)",
                               type(exc).__name__)
                self.stop_leading()
                self.back_off()
                return False
            logger.info("projector leads from block %s (after tx %r)", checkpoint.block_number,
                        checkpoint.transaction_id, extra={"block": checkpoint.block_number})
            metrics.IS_LEADER.set(1)
            metrics.CHECKPOINT_BLOCK.set(checkpoint.block_number)
            if checkpoint.last_event_at is not None:
                self.last_event_at = checkpoint.last_event_at.timestamp()
            self.retry_at = 0.0
        elif not self.lock.alive():
            self.stop_leading()
            return False
        now = time.monotonic()
        if now >= self.next_height_poll:
            self.poll_height()
        if now < self.retry_at:
            return False
        try:
            if self.reader is None:
                self.open_stream()
            assert self.reader is not None
            item = self.reader.get_batch(self.wait_timeout)
        except Exception as exc:
            self.stream_failed(exc)
            return False
        if item is None:
            return False
        if item is _END or isinstance(item, Exception):
            self.stream_failed(item if isinstance(item, Exception) else RuntimeError("event stream ended"))
            return False
        return self.apply(item)

    def apply(self, blocks: list[ChaincodeEventBlock]) -> bool:
        """Applies consecutive blocks (one transaction); True when all of them were applied."""
        block = blocks[0]
        try:
            results = services.apply_blocks(blocks, name=self.name)
        except DATABASE_ERRORS as exc:
            # PostgreSQL restarting is an outage, not a poison event: nothing was committed; retry from the
            # checkpoint after a backoff without calling the projector stuck (no alert, no stored error).
            logger.warning("projector: database unavailable while applying block %s (%s); retrying",
                           block.block_number, type(exc).__name__)
            self.close_stream()
            self.back_off()
            return False
        except Exception as exc:
            tx_id = block.events[0].transaction_id if block.events else ""
            where = (f"block {block.block_number}" if len(blocks) == 1
                     else f"blocks {block.block_number}-{blocks[-1].block_number}")
            message = f"handler failed on {where}: {type(exc).__name__}: {exc}"
            logger.exception("projector stuck: %s", message, extra={"tx_id": tx_id, "block": block.block_number})
            try:
                services.record_failure(tx_id=tx_id, message=message, name=self.name)
            except Exception:
                logger.exception("projector could not record its failure")
            self.fail(message)
            return False
        result = results[-1]
        self.checkpoint = result.checkpoint
        if result.malformed is not None:
            event = result.malformed.event
            logger.error("projector stuck: %s", result.malformed,
                         extra={"tx_id": event.transaction_id, "block": event.block_number,
                                "event_name": event.event_name})
            self.fail(str(result.malformed))
            return False
        if self.stuck:
            logger.info("projector moving again at block %s", block.block_number)
        self.failures = 0
        self.stuck = False
        self.last_error = ""
        metrics.STUCK.set(0)
        if any(r.applied or r.skipped for r in results):
            self.last_event_at = time.time()
        if self.height is not None:
            metrics.LAG_BLOCKS.set(services.lag_blocks(height=self.height, block_number=result.checkpoint[0]) or 0)
        return True

    # -- failure handling ---------------------------------------------------------------------------------
    def fail(self, message: str) -> None:
        self.stuck = True
        self.last_error = message
        metrics.STUCK.set(1)
        self.close_stream()
        self.back_off()

    def stream_failed(self, exc: BaseException) -> None:
        logger.warning("projector event stream failed: %s; reconnecting from the checkpoint", exc)
        metrics.STREAM_RECONNECTS.inc()
        self.close_stream()
        self.network = None
        self.back_off()

    def back_off(self) -> None:
        self.failures += 1
        delay = min(settings.PROJECTOR_RETRY_MAX_SECONDS,
                    settings.PROJECTOR_RETRY_BASE_SECONDS * 2 ** min(self.failures - 1, 16))
        self.retry_at = time.monotonic() + delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto

    # -- Fabric -------------------------------------------------------------------------------------------
    def _network(self) -> Any:
        if self.network is None:
            self.network = self.network_factory()
        return self.network

    def open_stream(self) -> None:
        checkpoint = services.get_checkpoint(self.name)
        cp = _StreamCheckpoint(checkpoint.block_number, checkpoint.transaction_id or None)
        stream = self._network().chaincode_event_blocks(self.chaincode, checkpoint=cp)
        self.reader = StreamReader(stream, prepare=True)

    def close_stream(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def poll_height(self) -> None:
        self.next_height_poll = time.monotonic() + settings.PROJECTOR_HEIGHT_POLL_SECONDS
        try:
            info = self._network().chain_info(timeout=settings.FABRIC_EVALUATE_TIMEOUT)
        except Exception as exc:
            logger.warning("projector cannot read the chain height: %s", exc)
            self.network = None if self.reader is None else self.network
            return
        self.height = info.height
        try:
            services.store_chain_height(info.height, name=self.name)
        except DATABASE_ERRORS as exc:  # PostgreSQL restarting: the next poll stores it
            logger.warning("projector cannot store the chain height: database unavailable (%s)", type(exc).__name__)

    def stop_leading(self) -> None:
        self.close_stream()
        self.lock.release()
        metrics.IS_LEADER.set(0)

    def close(self) -> None:
        self.stop_leading()


class _StreamCheckpoint:
    """The (block, tx id) pair ``fabric_client`` resumes from (its ``Checkpoint`` protocol)."""

    def __init__(self, block_number: int, transaction_id: str | None) -> None:
        self.block_number = block_number
        self.transaction_id = transaction_id
