"""LeaderLock on real PostgreSQL: leadership is proven by the lock session itself, never by a fresh one."""

from __future__ import annotations

import pytest
from django.db import connection

from projector.leader import LeaderLock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def locks():
    made: list[LeaderLock] = []

    def make(name: str = "leader-test") -> LeaderLock:
        lock = LeaderLock(name)
        made.append(lock)
        return lock

    yield make
    for lock in made:
        lock.release()


def test_the_holder_is_alive_and_a_second_process_cannot_lead(locks):
    first, second = locks(), locks()
    assert first.try_acquire() and first.alive()
    assert not second.try_acquire() and not second.alive()


def test_a_lost_lock_session_is_not_alive_even_though_a_new_session_would_answer(locks):
    leader, standby = locks(), locks()
    assert leader.try_acquire()
    with connection.cursor() as cursor:  # the database ends the lock's session (failover, idle timeout, restart)
        cursor.execute("SELECT pg_terminate_backend(%s)", [leader._conn.info.backend_pid])
    assert leader.alive() is False and leader.held is False
    assert standby.try_acquire()  # the lock went with the session: the standby leads now, alone
    assert leader.alive() is False


def test_a_closed_lock_connection_is_not_replaced_by_a_fresh_session_that_holds_nothing(locks):
    leader, standby = locks(), locks()
    assert leader.try_acquire()
    leader._conn.close()  # e.g. a client-side reconnect: a new session would answer SELECT 1 but hold no lock
    assert leader.alive() is False
    assert standby.try_acquire() and standby.alive()


def test_a_session_that_answers_but_no_longer_holds_the_lock_is_not_alive(locks):
    leader, standby = locks(), locks()
    assert leader.try_acquire()
    with leader._conn.cursor() as cursor:  # e.g. a pooler that handed the session over: it answers, lock-less
        cursor.execute("SELECT pg_advisory_unlock_all()")
    assert leader.alive() is False
    assert standby.try_acquire() and standby.alive()
