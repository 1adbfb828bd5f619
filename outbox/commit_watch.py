"""The commit statuses of a submitter's new transactions, read from one filtered-block stream.

Without it, every transaction costs a third gRPC call and a third ECDSA signature: a CommitStatus request that
waits for the commit. With it, the process keeps one stream of filtered blocks from the peer's Deliver service
(each transaction's id and validation code, docs/FABRIC_GATEWAY.md §3). A worker registers its new tx id
(:meth:`CommitWatcher.expect`) before it submits, and the block that carries the tx id answers it.

Nothing here decides an outcome that CommitStatus would decide differently. A tx id is registered only
- while the stream is live, i.e. after its first block (the newest at connect) arrived, so every block
  committed later is delivered, in order and without gaps;
- for an envelope that was never submitted before, so its first occurrence on the chain is in a block still
  to come.

Every doubt falls back to the signed CommitStatus call, which is authoritative: a stream that is not live yet,
a stream that breaks (every registered tx id is released at once), or an answer that does not come within
the commit-status timeout. Resubmitted envelopes always ask CommitStatus: they may have committed long ago.
"""

from __future__ import annotations

import _thread
import logging
import threading
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from fabric_client import BlockEventsError, BlockStream, FilteredBlock, Status

logger = logging.getLogger("outbox.submitter")

STREAM_UP = Gauge("outbox_block_stream_up",
                  "1 while this submitter reads commit statuses from its filtered-block stream; 0 while it asks "
                  "CommitStatus per transaction.", multiprocess_mode="min")
STATUS_SOURCE = Counter("outbox_commit_status_total",
                        "Commit statuses learned, by source: blocks (the filtered-block stream) or query (a "
                        "CommitStatus call: stream not live, broken, or no answer in time; resubmissions).",
                        ["source"])
FROM_BLOCKS = STATUS_SOURCE.labels("blocks")
FROM_QUERY = STATUS_SOURCE.labels("query")


class Expected:
    """One registered tx id; :meth:`wait` returns its status, or None when the stream cannot answer."""

    __slots__ = ("_ready", "status")

    def __init__(self) -> None:
        self._ready = _thread.allocate_lock()  # held until answered: a C lock, cheaper than an Event
        self._ready.acquire()
        self.status: Status | None = None

    def answer(self, status: Status | None) -> None:
        self.status = status
        self._ready.release()

    def wait(self, timeout: float) -> Status | None:
        self._ready.acquire(timeout=timeout)
        return self.status


class CommitWatcher:
    """One thread following ``open_stream()`` (a filtered-block stream from the newest block), reconnecting
    with backoff when it breaks; :meth:`expect` and :meth:`forget` are called from any thread."""

    def __init__(self, open_stream: Callable[[], BlockStream], *, name: str = "submitter-block-stream",
                 max_backoff: float = 30.0) -> None:
        self._open_stream = open_stream
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._expected: dict[str, Expected] = {}
        self._stream: BlockStream | None = None
        self._stopping = threading.Event()
        self.live = False
        self.block_number: int | None = None  # the last block received
        STREAM_UP.set(0)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def expect(self, transaction_id: str) -> Expected | None:
        """Register a tx id about to be submitted for the first time; None when the stream is not live (ask
        CommitStatus instead)."""
        with self._lock:
            if not self.live:
                return None
            expected = self._expected[transaction_id] = Expected()
        return expected

    def forget(self, transaction_id: str) -> None:
        """The caller no longer waits (its Submit failed, or it gave up waiting)."""
        self._expected.pop(transaction_id, None)

    def health(self) -> str | None:
        """None while the thread runs (a broken stream is not unhealthy: CommitStatus answers meanwhile)."""
        return None if self.thread.is_alive() or self._stopping.is_set() else f"{self.thread.name} is dead"

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                stream = self._open_stream()
                with self._lock:
                    self._stream = stream
                if self._stopping.is_set():
                    stream.close()
                for block in stream:
                    if not self.live:
                        self._go_live(block.number)
                        backoff = 0.5
                    self._answer(block)
                reason = "the peer ended the stream"
            except BlockEventsError as exc:
                reason = str(exc)
            except Exception as exc:  # the thread must outlive any one stream
                logger.exception("block stream: unexpected error")
                reason = f"{type(exc).__name__}: {exc}"
            self._go_dark()
            if self._stopping.is_set():
                return
            logger.warning("block stream: %s; commit statuses are asked one by one until it is back (retry in "
                           "%.1f s)", reason, backoff)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _go_live(self, block_number: int) -> None:
        with self._lock:
            self.live = True
        STREAM_UP.set(1)
        logger.info("block stream: commit statuses follow the chain from block %s", block_number)

    def _answer(self, block: FilteredBlock) -> None:
        self.block_number = block.number
        expected = self._expected
        for transaction in block.transactions:
            waiter = expected.pop(transaction.transaction_id, None)
            if waiter is not None:  # the first occurrence: what CommitStatus reports too
                waiter.answer(Status(code=transaction.code, code_name=transaction.code_name,
                                     successful=transaction.successful, transaction_id=transaction.transaction_id,
                                     block_number=block.number))

    def _go_dark(self) -> None:
        with self._lock:
            self.live = False
            self._stream = None
            waiting, self._expected = self._expected, {}
        STREAM_UP.set(0)
        for waiter in waiting.values():
            waiter.answer(None)
