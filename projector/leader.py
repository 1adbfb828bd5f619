"""One active projector: a PostgreSQL session advisory lock held on a dedicated connection.

The lock lives on its own connection, not Django's: the worker loop closes and reopens Django's connection
(``close_old_connections``) and that must never drop leadership by accident. When the leader dies, even by
SIGKILL, PostgreSQL ends its session and releases the lock; a standby polling ``pg_try_advisory_lock`` takes
over and resumes from the checkpoint. Should two processes ever apply at once (a lock connection lost while
the old leader still runs), ``apply_block`` stays correct: it locks the checkpoint row and skips what is
already applied. On SQLite (``make run``: one process of each kind) there is no lock and every process leads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

from django.db import connections

logger = logging.getLogger("projector")


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` derived from the checkpoint name."""
    digest = hashlib.sha256(f"gx-projector:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LeaderLock:
    def __init__(self, name: str, *, alias: str = "default") -> None:
        self.key = lock_key(name)
        self.alias = alias
        self._conn: Any = None
        self.held = False

    @property
    def supported(self) -> bool:
        return connections[self.alias].vendor == "postgresql"

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            wrapper = connections[self.alias]
            self._conn = wrapper.get_new_connection(wrapper.get_connection_params())
            self._conn.autocommit = True
        return self._conn

    def try_acquire(self) -> bool:
        """Takes the lock if nobody holds it; True when this process is (now) the leader."""
        if not self.supported:
            self.held = True
            return True
        if self.held:
            return self.alive()
        try:
            with self._connection().cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
                self.held = bool(cursor.fetchone()[0])
        except Exception as exc:
            logger.warning("projector lock: cannot reach the database (%s)", type(exc).__name__)
            self._drop()
        return self.held

    def alive(self) -> bool:
        """Whether the lock is still ours: its session must still answer."""
        if not self.supported:
            return True
        if not self.held:
            return False
        try:
            with self._connection().cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception:
            logger.warning("projector lock: lock session lost, giving up leadership")
            self._drop()
        return self.held

    def held_by_someone(self) -> bool:
        """For status output: is some process (maybe this one) holding the lock right now?"""
        if not self.supported:
            return False
        if self.held:
            return True
        if self.try_acquire():
            self.release()
            return False
        return True

    def release(self) -> None:
        if self.supported and self.held and self._conn is not None and not self._conn.closed:
            try:
                with self._conn.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            except Exception:  # noqa: S110 - closing the session below releases it anyway
                pass
        self._drop()

    def _drop(self) -> None:
        self.held = False
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the session is gone either way
                self._conn.close()
        self._conn = None
