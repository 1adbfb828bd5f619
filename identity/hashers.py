"""Argon2id with parameters chosen for the API pod's memory limit (see README, "Password hashing").

64 MiB, 3 passes, 1 lane: RFC 9106's second recommended option (its memory-constrained choice), with one lane
instead of four so one hash occupies one core. Each process runs at most ``PASSWORD_HASH_CONCURRENCY`` hashes at
once (default 1, i.e. one per gunicorn worker, as many as the pod has cores): hashing memory stays bounded at
workers x 64 MiB whatever the thread count, and extra logins queue for a slot instead of time-slicing the cores
with each other (8 hashes sharing 2 cores got ~10% fewer done per second than 2). Hashes stored with other
parameters (the earlier 19 MiB / 2 passes) still verify and are rehashed on the user's next login (Django's
``must_update``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher

_gate_lock = threading.Lock()
_gate: tuple[int, threading.BoundedSemaphore] | None = None


@contextmanager
def hashing_slot() -> Iterator[None]:
    """Holds one of this process's ``PASSWORD_HASH_CONCURRENCY`` hashing slots, waiting for one if all are taken."""
    global _gate
    size = settings.PASSWORD_HASH_CONCURRENCY
    with _gate_lock:
        if _gate is None or _gate[0] != size:
            _gate = (size, threading.BoundedSemaphore(size))
        slots = _gate[1]
    with slots:
        yield


class TunedArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 3
    memory_cost = 64 * 1024  # KiB
    parallelism = 1

    def encode(self, password: str, salt: str) -> str:
        with hashing_slot():
            return super().encode(password, salt)

    def verify(self, password: str, encoded: str) -> bool:
        with hashing_slot():
            return super().verify(password, encoded)
