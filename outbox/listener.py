"""LISTEN for one PostgreSQL channel on a dedicated connection that is re-established, with backoff, whenever
it is lost: a process that lost its listener must not poll for the rest of its life.

The owner selects on :meth:`NotifyListener.fileno` (None while not listening), calls :meth:`drain` when it is
readable and :meth:`ensure` now and then (a cheap no-op until the next reconnection is due). Only PostgreSQL
has LISTEN; elsewhere there is no listener and the owner polls.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from prometheus_client import Gauge

logger = logging.getLogger("outbox.listener")

#: application_name of the listening connection (pg_stat_activity tells it apart from the pool's).
APPLICATION_NAME = "gx-outbox-listener"

LISTENING = Gauge(
    "outbox_listening",
    "1 while this submitter LISTENs for new commands (woken at once); 0 while it only polls every "
    "OUTBOX_POLL_INTERVAL (LISTEN lost or unavailable; it is re-established with backoff).",
    multiprocess_mode="min",
)


class NotifyListener:
    """``LISTEN channel`` on its own autocommit connection; lost or refused → retried with exponential backoff
    (``retry_base`` doubling to ``retry_max`` seconds, jittered to 50–100 %), the ``outbox_listening`` gauge
    saying which state the process is in."""

    def __init__(self, channel: str, *, retry_base: float = 1.0, retry_max: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.channel = channel
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._clock = clock
        self._conn: Any = None
        self._failures = 0
        self._retry_at = 0.0
        LISTENING.set(0)

    @property
    def listening(self) -> bool:
        return self._conn is not None

    def fileno(self) -> int | None:
        return self._conn.fileno() if self._conn is not None else None

    def ensure(self) -> bool:
        """Listens if it does not and a retry is due; True while listening."""
        if self._conn is None and self._clock() >= self._retry_at:
            self._connect()
        return self._conn is not None

    def drain(self) -> None:
        """Consumes the pending notifications (their content does not matter: each one means "look again");
        a broken connection is closed and its re-establishment scheduled."""
        if self._conn is None:
            return
        try:
            for _ in self._conn.notifies(timeout=0.0):
                pass
        except Exception as exc:  # the server ended the connection (restart, failover, terminated backend)
            logger.warning("LISTEN %s connection lost (%s); polling until it is back", self.channel, exc)
            self._lost()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
                LISTENING.set(0)

    def _connect(self) -> None:
        import psycopg

        params = {k: v for k, v in connection.get_connection_params().items()
                  if k not in ("cursor_factory", "context", "prepare_threshold", "pool")}
        # Keepalives: a connection that died silently (a network partition) is noticed within minutes, not
        # after the kernel's two hours.
        params.update(application_name=APPLICATION_NAME, keepalives=1, keepalives_idle=30,
                      keepalives_interval=10, keepalives_count=3)
        try:
            conn = psycopg.connect(**params, autocommit=True)
            try:
                conn.execute(f"LISTEN {self.channel}")
            except BaseException:
                conn.close()
                raise
        except psycopg.Error as exc:
            self._failures += 1
            delay = self._schedule_retry()
            logger.warning("LISTEN %s unavailable (%s); polling, next try in %.1fs", self.channel,
                           str(exc).strip(), delay)
            return
        if self._failures:
            logger.info("LISTEN %s re-established after %d failed attempt(s)", self.channel, self._failures)
        self._conn, self._failures = conn, 0
        LISTENING.set(1)

    def _lost(self) -> None:
        try:
            self._conn.close()
        except Exception:  # it is broken already
            logger.debug("closing the lost LISTEN connection failed", exc_info=True)
        self._conn = None
        LISTENING.set(0)
        # Retried at once (a terminated backend, a pooler restart); repeated failures back off.
        self._retry_at = self._clock()

    def _schedule_retry(self) -> float:
        """After ``_failures`` failed attempts in a row: the next one in base·2^(n-1), capped, jittered."""
        jitter = 0.5 + 0.5 * random.random()  # noqa: S311 - spreading retries, not a secret
        delay = min(self.retry_max, self.retry_base * 2 ** (self._failures - 1)) * jitter
        self._retry_at = self._clock() + delay
        return delay
