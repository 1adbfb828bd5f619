"""Progress signals between processes: the submitter and the projector NOTIFY, API requests wait for them.

Two PostgreSQL channels, each sent *inside* the transaction that makes the change, so it is delivered at
COMMIT (never for a rollback) and a woken reader always finds the committed rows:

- ``gx_command``, payload the command's primary key: a command became final (COMMITTED or FAILED)
  (``outbox.services``, the submitter's outcome writes);
- ``gx_checkpoint``, payload the checkpoint's next block: the read models applied blocks
  (``projector.services``, the projector's block transaction).

The API side is one :class:`Listener` per process: a daemon thread holding **one** autocommit connection that
LISTENs on both channels and wakes only the waiters a notification concerns (a command's waiters on its
``gx_command``; a block's waiters once the checkpoint passes it). One connection per process, not one per
waiting request: PostgreSQL connections are the scarce resource (each waiting thread would otherwise hold a
second one), and a notification costs one read on one socket however many requests wait. A waiter holds a
gunicorn thread and nothing else while it sleeps on its :class:`threading.Event`; the bound on waiters per
process (``API_WAIT_MAX_WAITERS``) keeps threads free for plain requests (:func:`waiter_slot`).

No busy polling: on PostgreSQL a waiter sleeps until a notification (or its deadline). When the listener's
connection is down (and on reconnect, which may have missed notifications) every waiter re-checks; while it is
down, and always on SQLite (no LISTEN/NOTIFY), waiters re-check every ``POLL_SECONDS``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from prometheus_client import Counter

logger = logging.getLogger("gxbackend.progress")

COMMAND_CHANNEL = "gx_command"
CHECKPOINT_CHANNEL = "gx_checkpoint"
RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS = 0.5, 10.0
POLL_SECONDS = 0.25  # only without a LISTEN connection (SQLite, or PostgreSQL while reconnecting)
APPLICATION_NAME = "gx-progress-listener"  # how the LISTEN connections show in pg_stat_activity
HEARTBEAT_SECONDS = 5.0  # the LISTEN connection is checked this often (and by TCP keepalives) when quiet
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}

WAITS = Counter("api_waits_total", "Requests that asked to wait for a write to be visible, by outcome: visible "
                "(in time), timeout (the wait ended first), declined (too many waiters in this process).",
                ["outcome"])
for _outcome in ("visible", "timeout", "declined"):
    WAITS.labels(_outcome)


# --- senders (inside the caller's transaction) -------------------------------------------------------------
def notify(channel: str, payload: str) -> None:
    """``pg_notify`` on the default connection (PostgreSQL only; a no-op elsewhere). Inside a transaction it is
    delivered when that transaction commits; identical (channel, payload) pairs of one transaction arrive once."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def notify_command_final(command_pk: int) -> None:
    notify(COMMAND_CHANNEL, str(command_pk))


def notify_checkpoint(next_block: int) -> None:
    notify(CHECKPOINT_CHANNEL, str(next_block))


# --- waiters -----------------------------------------------------------------------------------------------
class Subscription:
    """What one waiting request waits for: a command to become final and/or the checkpoint to pass a block.

    Usage (no notification can be lost between the check and the sleep)::

        with listener().subscribe(command_pk=pk) as sub:
            while True:
                sub.arm()                      # forget earlier wake-ups, then look
                if done(): break
                sub.after_block = block        # may be set or changed while looking
                if not sub.sleep(deadline): break
    """

    def __init__(self, owner: Listener, command_pk: int | None, after_block: int | None) -> None:
        self.owner = owner
        self.command_pk = command_pk
        self.after_block = after_block  # woken once the checkpoint's next block is > after_block
        self.event = threading.Event()

    def arm(self) -> None:
        self.event.clear()

    def sleep(self, deadline: float) -> bool:
        """Sleeps until woken or ``deadline`` (``time.monotonic()``); False when the deadline has passed or the
        process is shutting down (:func:`release_waiters`)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or _draining.is_set():
            return False
        if not self.owner.listening:
            remaining = min(remaining, POLL_SECONDS)
        self.event.wait(remaining)
        return True


class Listener:
    """The process's one LISTEN connection and the subscriptions it wakes (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: set[Subscription] = set()
        self.listening = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @contextlib.contextmanager
    def subscribe(self, *, command_pk: int | None = None, after_block: int | None = None) -> Iterator[Subscription]:
        self._ensure_started()
        subscription = Subscription(self, command_pk, after_block)
        with self._lock:
            self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                self._subscriptions.discard(subscription)

    def dispatch(self, channel: str, payload: str) -> None:
        """Wakes the subscriptions one notification concerns (called by the listening thread)."""
        try:
            value = int(payload)
        except ValueError:
            logger.warning("ignoring a %s notification with payload %r", channel, payload[:64])
            return
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            if channel == COMMAND_CHANNEL:
                woken = subscription.command_pk == value
            else:
                woken = subscription.after_block is not None and value > subscription.after_block
            if woken:
                subscription.event.set()

    def wake_all(self) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.event.set()

    def _ensure_started(self) -> None:
        if self._thread is not None or connection.vendor != "postgresql":
            return
        with self._lock:
            if self._thread is None:
                params = listen_connection_params()
                self._thread = threading.Thread(target=self._run, args=(params,), name="progress-listener",
                                                daemon=True)
                self._thread.start()

    def _run(self, params: dict[str, Any]) -> None:
        import psycopg

        delay = RECONNECT_MIN_SECONDS
        while not self._stopping.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {COMMAND_CHANNEL}")
                    conn.execute(f"LISTEN {CHECKPOINT_CHANNEL}")
                    self.listening = True
                    delay = RECONNECT_MIN_SECONDS
                    self.wake_all()  # whatever happened while not listening: everyone looks again
                    checked = time.monotonic()
                    while not self._stopping.is_set():
                        for notification in conn.notifies(timeout=1.0):
                            self.dispatch(notification.channel, notification.payload)
                        if time.monotonic() - checked >= HEARTBEAT_SECONDS:
                            conn.execute("SELECT 1")  # a connection that died quietly raises here, not never
                            checked = time.monotonic()
            except Exception as exc:  # connection refused or lost: waiters poll meanwhile
                if self.listening:
                    logger.warning("LISTEN connection lost (%s); waiters poll until it is back", exc)
                self.listening = False
                self.wake_all()
                self._stopping.wait(delay)
                delay = min(RECONNECT_MAX_SECONDS, delay * 2)
        self.listening = False

    def stop(self) -> None:
        """Ends the listening thread (tests); waiters fall back to polling."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)


def listen_connection_params() -> dict[str, Any]:
    """psycopg connection arguments of the default database, for a dedicated autocommit connection."""
    params = {k: v for k, v in connection.get_connection_params().items()
              if k not in ("cursor_factory", "context", "prepare_threshold")}
    return {**_KEEPALIVES, **params, "application_name": APPLICATION_NAME}


_listener: Listener | None = None
_listener_lock = threading.Lock()
_draining = threading.Event()


def listener() -> Listener:
    """This process's listener (started on first use: after gunicorn forked its workers)."""
    global _listener
    with _listener_lock:
        if _listener is None:
            _listener = Listener()
        return _listener


def stop_listener() -> None:
    """Stops and forgets this process's listener, if any (tests: its connection keeps the database open)."""
    global _listener
    with _listener_lock:
        current, _listener = _listener, None
    if current is not None:
        current.stop()


def release_waiters() -> None:
    """The process is shutting down (gunicorn's SIGTERM, see deploy/gunicorn.conf.py): every waiting request
    answers now with what it has, and new ones do not wait, so none outlives the graceful timeout."""
    _draining.set()
    with _listener_lock:
        current = _listener
    if current is not None:
        current.wake_all()


# --- the bound on waiting requests -------------------------------------------------------------------------
_slots: threading.BoundedSemaphore | None = None
_slots_size = -1


@contextlib.contextmanager
def waiter_slot() -> Iterator[bool]:
    """Yields True while holding one of this process's ``API_WAIT_MAX_WAITERS`` waiting slots, False when they
    are all taken (the caller answers at once, as without a wait). Never blocks."""
    global _slots, _slots_size
    size = settings.API_WAIT_MAX_WAITERS
    with _listener_lock:
        if _slots is None or _slots_size != size:  # sized on first use (tests may change the setting)
            _slots, _slots_size = threading.BoundedSemaphore(size) if size > 0 else None, size
        slots = _slots
    if slots is None or _draining.is_set() or not slots.acquire(blocking=False):
        WAITS.labels("declined").inc()
        yield False
        return
    try:
        yield True
    finally:
        slots.release()
