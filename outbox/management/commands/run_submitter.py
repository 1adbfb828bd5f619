"""``manage.py run_submitter``: the outbox submitter (one process of the ``outbox-submitter`` Deployment).

Loops over :meth:`Submitter.submit_once` (claim what fits into the free in-flight slots); when idle it waits
for a PostgreSQL ``NOTIFY outbox_command`` (sent when a command is enqueued or finishes), for one of its own
commands to finish, or for ``OUTBOX_POLL_INTERVAL`` (the polling fallback; the only wake-up on SQLite). A lost
LISTEN connection is re-established with backoff (:mod:`outbox.listener`, gauge ``outbox_listening``).
SIGTERM: stop claiming, give in-flight commands ``OUTBOX_SHUTDOWN_GRACE_SECONDS``, hand back the leases of
the rest, exit 0. Metrics, ``/livez`` (the loop's heartbeat and every submitter thread alive and not stuck)
and ``/readyz`` on ``SUBMITTER_METRICS_PORT``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections

from gxbackend.workers import WorkerCommand
from outbox.listener import NotifyListener
from outbox.selectors import outbox_stats
from outbox.services import NOTIFY_CHANNEL
from outbox.submitter import DEAD_LETTERS, OLDEST_PENDING, QUEUE_DEPTH, Fabric, Submitter

logger = logging.getLogger("outbox.submitter")

GAUGE_REFRESH_SECONDS = 5.0  # scrapes come every 15-30 s; three queries every 2 s were 4 % of a busy process's CPU
COALESCE_SECONDS = 0.01
EXPLICIT_PREPARE_ONLY = 2**31 - 1  # psycopg's prepare_threshold: only ``execute(..., prepare=True)`` prepares


def use_connection_pool(in_flight: int) -> None:
    """Share a small psycopg pool between the in-flight threads of this process (PostgreSQL only).

    Each thread touches the database briefly between Fabric calls and hands its connection back at once:
    a connection per thread would exhaust PostgreSQL's slots across replicas, and opening one per step was
    measured at ~10 ms, the submitter's bottleneck.
    """
    if connection.vendor != "postgresql":
        return
    db = connections.settings[DEFAULT_DB_ALIAS]
    connections.close_all()
    db["CONN_MAX_AGE"] = 0  # the pool keeps the connections instead
    db["CONN_HEALTH_CHECKS"] = False  # a round trip per checkout; the pool drops connections that broke
    # Server-side prepared statements for the statements that ask for them (``prepare=True``: the claim and the
    # batch row writes), planned once per connection instead of at every execution (planning was a third of
    # their database CPU). Django disables preparing on its connections, which also disables ``prepare=True``;
    # a threshold no query reaches prepares nothing else. Needs a direct connection to PostgreSQL, or a
    # PgBouncer that keeps prepared statements (1.21+, max_prepared_statements).
    db["OPTIONS"] = {**db["OPTIONS"], "prepare_threshold": EXPLICIT_PREPARE_ONLY,
                     "pool": {"min_size": 1, "max_size": 2 + max(2, in_flight // 4), "timeout": 30}}


class Command(WorkerCommand):
    help = "Submit outbox commands to Fabric (claims with leases, several in flight, exactly-once effect)."
    worker_name = "outbox-submitter"
    metrics_port_setting = "SUBMITTER_METRICS_PORT"

    def setup(self, **options: Any) -> None:
        self.idle_seconds = settings.OUTBOX_POLL_INTERVAL
        use_connection_pool(settings.OUTBOX_MAX_IN_FLIGHT)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.listener = NotifyListener(NOTIFY_CHANNEL) if connection.vendor == "postgresql" else None
        if self.listener is not None:
            self.listener.ensure()
        self.gauges_at = 0.0
        self.fabric = Fabric.from_settings()
        self.submitter = Submitter(
            self.fabric,
            worker_id=self.worker_id,
            max_in_flight=settings.OUTBOX_MAX_IN_FLIGHT,
            batch_size=settings.OUTBOX_BATCH_SIZE,
            lease_seconds=settings.OUTBOX_LEASE_SECONDS,
            wake=self.wake,
            block_stream=settings.OUTBOX_COMMITS_FROM_BLOCKS,
        )
        logger.info("submitter %s: %d in flight, lease %ss", self.worker_id, settings.OUTBOX_MAX_IN_FLIGHT,
                    settings.OUTBOX_LEASE_SECONDS, extra={"worker_id": self.worker_id})

    def run_unit(self) -> bool:
        try:
            self.refresh_gauges()
            return self.submitter.submit_once()
        except DatabaseError as exc:  # the database is away: in-flight work goes on, claiming resumes later
            logger.warning("claim failed: %s", exc)
            return False

    def on_stop(self) -> None:
        submitter = getattr(self, "submitter", None)
        if submitter is not None:
            submitter.drain(settings.OUTBOX_SHUTDOWN_GRACE_SECONDS)
        if getattr(self, "listener", None) is not None:
            self.listener.close()
        if getattr(self, "fabric", None) is not None:
            self.fabric.gateway.close()

    def is_live(self) -> tuple[bool, str]:
        live, detail = super().is_live()
        submitter = getattr(self, "submitter", None)
        if not live or submitter is None:
            return live, detail
        return submitter.health()

    def is_ready(self) -> tuple[bool, str]:
        if self.stopping.is_set():
            return False, "stopping"
        try:
            connection.ensure_connection()
        except Exception as exc:
            return False, f"database: {type(exc).__name__}"
        finally:
            connection.close()
        return True, "ok"

    # -- wake-ups ------------------------------------------------------------------------------------------
    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending anyway
            os.write(self.wake_w, b"x")

    def wait(self, timeout: float) -> bool:
        """Waits for a NOTIFY, a finished command of our own, or ``timeout``; renews leases while idle and
        re-establishes a lost LISTEN when its retry is due."""
        fds = [self.wake_r]
        if self.listener is not None and self.listener.ensure():
            fds.append(self.listener.fileno())
        ready, _, _ = select.select(fds, [], [], timeout)
        if ready:
            # Commands of one block finish within milliseconds of each other: gather their slots into
            # one claim instead of one claim per finished command.
            self.stopping.wait(COALESCE_SECONDS)
            self.drain_wakeups()
            return True
        self.submitter.renew_leases()
        return False

    def drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        if self.listener is not None:
            self.listener.drain()

    def refresh_gauges(self) -> None:
        if time.monotonic() - self.gauges_at < GAUGE_REFRESH_SECONDS:
            return
        self.gauges_at = time.monotonic()
        stats = outbox_stats(finished=False)  # the gauges need no count of the (ever growing) finished rows
        QUEUE_DEPTH.set(stats.queue_depth)
        OLDEST_PENDING.set(stats.oldest_pending_age_seconds)
        DEAD_LETTERS.set(stats.dead_letters)
