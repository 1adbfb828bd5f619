"""Waiting for a write to be visible: NOTIFY wakes exactly the waiters it concerns, waits are bounded per
process, and a process over its bound answers at once (gxbackend.progress, gxbackend.waits)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from gxbackend import progress, waits
from identity.models import User
from outbox.tests.conftest import commit_command, enqueue_create_user, projected_until

WAIT = 30  # the bound each waiting request asks for; every test ends long before it


@pytest.fixture
def owner(transactional_db):
    return User.objects.create_user(email="waiter@example.com", password="x-very-long-password-1")


class Request(threading.Thread):
    """One API GET on its own thread (its own database connection, like a gunicorn thread)."""

    def __init__(self, user, path: str) -> None:
        super().__init__(daemon=True)
        self.user, self.path = user, path
        self.response = None
        self.finished_at: float | None = None
        self.start()

    def run(self) -> None:
        from rest_framework.test import APIClient

        client = APIClient()
        client.force_authenticate(self.user)
        try:
            self.response = client.get(self.path)
        finally:
            self.finished_at = time.monotonic()
            connections.close_all()


def wait_for_waiters(count: int, timeout: float = 10.0) -> None:
    """Until ``count`` requests of this process sleep in a subscription (bounded; nothing timed is asserted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = progress._listener
        if current is not None and current.listening and len(current._subscriptions) >= count:
            return
        time.sleep(0.02)
    pytest.fail(f"{count} waiter(s) never subscribed")


def test_a_waiting_command_read_answers_when_the_submitter_and_then_the_projector_notify(owner):
    command = enqueue_create_user(requested_by=owner)
    request = Request(owner, f"/api/v1/commands/{command.command_id}?wait={WAIT}")
    wait_for_waiters(1)
    commit_command(command, 4)  # committed (gx_command), but the read models are not there yet: it keeps waiting
    projected_until(3)  # gx_checkpoint for an earlier block: still waiting
    time.sleep(0.3)
    assert request.is_alive()
    released = time.monotonic()
    projected_until(4)
    request.join(WAIT)
    assert not request.is_alive()
    body = request.response.json()
    assert (body["status"], body["visible"], body["visible_at_block"], body["checkpoint_block"]) == (
        "COMMITTED", True, 4, 4)
    # Woken by the notification, not by its bound: it answered within seconds of the block being applied.
    assert request.finished_at - released < WAIT / 3


def test_a_wallet_read_with_min_block_waits_for_that_block_and_says_stale_when_the_wait_ends_first(owner):
    from projector.models import Wallet

    Wallet.objects.create(user=owner, balance_qirat=5)
    projected_until(1)
    base = f"/api/v1/users/{owner.pk}/wallet"
    quick = Request(owner, f"{base}?min_block=2&wait=1")
    quick.join(WAIT)
    assert quick.response.status_code == 200
    assert (quick.response.json()["stale"], quick.response.json()["checkpoint_block"]) == (True, 1)

    waiting = Request(owner, f"{base}?min_block=2&wait={WAIT}")
    wait_for_waiters(1)
    projected_until(2)
    waiting.join(WAIT)
    body = waiting.response.json()
    assert (body["stale"], body["checkpoint_block"], body["balance_qirat"]) == (False, 2, "5")


def test_over_the_bound_a_request_is_answered_at_once_with_retry_after(owner, settings):
    settings.API_WAIT_MAX_WAITERS = 2
    command = enqueue_create_user(requested_by=owner)
    path = f"/api/v1/commands/{command.command_id}?wait={WAIT}"
    held = [Request(owner, path) for _ in range(2)]
    wait_for_waiters(2)
    declined = Request(owner, path)
    declined.join(WAIT / 3)
    assert not declined.is_alive() and all(r.is_alive() for r in held)
    assert declined.response.status_code == 200
    assert declined.response["Retry-After"] == "1"
    assert declined.response.json()["visible"] is False
    commit_command(command, 2)
    projected_until(2)
    for request in held:
        request.join(WAIT)
        assert request.response.json()["visible"] is True and "Retry-After" not in request.response


def test_a_notification_wakes_only_the_waiters_it_concerns():
    listener = progress.Listener()
    command_5, command_6 = progress.Subscription(listener, 5, None), progress.Subscription(listener, 6, None)
    block_9, block_10 = progress.Subscription(listener, None, 9), progress.Subscription(listener, None, 10)
    listener._subscriptions.update({command_5, command_6, block_9, block_10})
    listener.dispatch(progress.COMMAND_CHANNEL, "5")
    listener.dispatch(progress.CHECKPOINT_CHANNEL, "10")  # next block 10: blocks up to 9 are applied
    assert [s.event.is_set() for s in (command_5, command_6, block_9, block_10)] == [True, False, True, False]
    listener.dispatch(progress.CHECKPOINT_CHANNEL, "not a number")  # ignored, logged


@pytest.mark.parametrize(("header", "seconds"), [
    ("wait=10", 10), ("respond-async, wait=5", 5), ("WAIT = 7", 7), ('wait="3"', 3), ("wait=600", 30),
    ("wait=10; foo=bar", 10), ("", None), ("wait=", None), ("wait=-1", None), ("wait=1.5", None),
    ("handling=lenient", None),
])
def test_prefer_wait_follows_rfc_7240_and_is_capped(rf, header, seconds):
    from rest_framework.request import Request as DrfRequest

    request = DrfRequest(rf.post("/api/v1/transfers", HTTP_PREFER=header))
    assert waits.prefer_wait(request) == seconds


# --- one gunicorn worker process, as in the pod --------------------------------------------------------------
def test_fifty_waiters_on_one_gunicorn_process_do_not_block_plain_requests(subprocess_env, owner):
    """One worker with the pod's 4 threads and its bound of 2 waiters: 50 requests wait for a command at once;
    GET /health still answers while the held ones wait, the others are answered at once with Retry-After, and
    the held ones answer when the command becomes visible (NOTIFY reaching the worker's one LISTEN connection)."""
    import concurrent.futures
    import json
    import urllib.request

    from gxbackend.testing import http_get, running_gunicorn
    from identity.tokens import tokens_for

    command = enqueue_create_user(requested_by=owner)
    auth = {"Authorization": f"Bearer {tokens_for(owner)['access']}"}
    env = {**subprocess_env, "API_WAIT_MAX_WAITERS": "2", "LOG_LEVEL": "WARNING"}
    with running_gunicorn(env, workers=1, threads=4) as base, \
            concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        url = f"{base}/api/v1/commands/{command.command_id}?wait={WAIT}"

        def get() -> tuple[int, dict, bool]:
            with urllib.request.urlopen(urllib.request.Request(url, headers=auth), timeout=WAIT * 2) as response:
                return response.status, json.loads(response.read()), response.headers.get("Retry-After") == "1"

        waiters = [pool.submit(get) for _ in range(50)]
        # The 48 over the bound are answered at once (as without a wait), saying so.
        deadline = time.monotonic() + WAIT / 2
        while sum(f.done() for f in waiters) < 48 and time.monotonic() < deadline:
            time.sleep(0.05)
        answered = [f.result() for f in waiters if f.done()]
        assert len(answered) == 48
        assert all(status == 200 and not body["visible"] and declined for status, body, declined in answered)

        status, body = http_get(f"{base}/health", timeout=WAIT / 2)
        assert status == 200
        held = [f for f in waiters if not f.done()]
        assert len(held) == 2  # /health answered while they wait

        commit_command(command, 3)
        projected_until(3)
        for future in held:
            status, body, declined = future.result(timeout=WAIT)
            assert (status, body["status"], body["visible"], declined) == (200, "COMMITTED", True, False)


def test_on_sigterm_a_gunicorn_worker_answers_its_waiting_requests_at_once(subprocess_env, owner):
    """A wait may be longer than gunicorn's graceful timeout (20 s): on SIGTERM the worker releases its waiters,
    which answer with what they have, instead of being cut off when the worker is killed."""
    import urllib.request

    from gxbackend.testing import running_gunicorn
    from identity.tokens import tokens_for

    command = enqueue_create_user(requested_by=owner)
    auth = {"Authorization": f"Bearer {tokens_for(owner)['access']}"}
    outcome: dict = {}

    def wait(url: str) -> None:
        with urllib.request.urlopen(urllib.request.Request(url, headers=auth), timeout=60) as response:
            outcome["status"], outcome["body"] = response.status, response.read()

    with running_gunicorn({**subprocess_env, "LOG_LEVEL": "WARNING"}, workers=1, threads=4) as base:
        waiter = threading.Thread(target=wait, args=(f"{base}/api/v1/commands/{command.command_id}?wait={WAIT}",),
                                  daemon=True)
        waiter.start()
        deadline = time.monotonic() + WAIT
        while not _worker_listens() and time.monotonic() < deadline:  # the request subscribed
            time.sleep(0.05)
        assert _worker_listens()
    # Leaving the block sent SIGTERM and waited for gunicorn to exit.
    waiter.join(5)
    assert outcome.get("status") == 200, outcome
    assert b'"visible":false' in outcome["body"]


def _listener_pids() -> list[int]:
    """The LISTEN connections open on this test's database (gunicorn's worker's, or this process's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name = %s", [progress.APPLICATION_NAME])
        return [row[0] for row in cursor.fetchall()]


def _worker_listens() -> bool:
    return bool(_listener_pids())


def test_a_waiter_still_answers_when_the_listen_connection_is_lost(owner):
    """The listener's connection dies while a request waits and the change commits meanwhile (its NOTIFY lost):
    the waiter looks again when the listener reconnects (polling in between), and answers long before its bound."""
    from django.db import connection

    command = enqueue_create_user(requested_by=owner)
    request = Request(owner, f"/api/v1/commands/{command.command_id}?wait={WAIT}")
    wait_for_waiters(1)
    [pid] = _listener_pids()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    commit_command(command, 5)
    projected_until(5)
    released = time.monotonic()
    request.join(WAIT)
    assert request.response.json()["visible"] is True
    assert request.finished_at - released < WAIT / 3
    deadline = time.monotonic() + 10
    while (not progress._listener.listening or _listener_pids() in ([], [pid])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert progress._listener.listening and _listener_pids() not in ([], [pid])  # it reconnected
