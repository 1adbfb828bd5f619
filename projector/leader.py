"""One active projector: a PostgreSQL session advisory lock held on a dedicated connection.

The lock lives on its own connection, not Django's: the worker loop closes and reopens Django's connection
(``close_old_connections``) and that must never drop leadership by accident. When the leader dies, even by
SIGKILL, PostgreSQL ends its session and releases the lock; a standby polling ``pg_try_advisory_lock`` takes
over and resumes from the checkpoint. Before every step the leader proves it still holds the lock
(:meth:`LeaderLock.alive`: ``pg_locks`` on the lock's own session). Should two processes ever apply at once
(a lock connection lost while the old leader still runs), ``apply_blocks`` stays correct: it locks the
checkpoint row and skips what is already applied. On SQLite (``make run``: one process of each kind) there
is no lock and every process leads.
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
        """Whether this process still holds the lock, proven by PostgreSQL: the session that took it must still
        answer and list the lock as its own in ``pg_locks``. Asked on that very session, never on a new one: a
        fresh session (after a reconnect) holds no lock, and answering "alive" from it would let two
        projectors lead. On any doubt leadership is given up (the standby loop takes it again if it is free).
        """
        if not self.supported:
            return True
        if not self.held:
            return False
        conn = self._conn
        if conn is None or conn.closed:
            logger.warning("projector lock: lock session closed, giving up leadership")
            self._drop()
            return False
        try:
            with conn.cursor() as cursor:
                cursor.execute(self.OWN_LOCK_SQL, [(self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF])
                holds = bool(cursor.fetchone()[0])
        except Exception:
            logger.warning("projector lock: lock session lost, giving up leadership")
            self._drop()
            return False
        if not holds:
            logger.warning("projector lock: the lock session no longer holds the lock, giving up leadership")
            self._drop()
        return self.held

    # A bigint advisory key appears in pg_locks split into classid (high 32 bits) and objid (low 32 bits), with
    # objsubid 1; pid = pg_backend_pid() makes it this session's lock, not anyone else's.
    OWN_LOCK_SQL = (
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND pid = pg_backend_pid() AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1)"
    )

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
