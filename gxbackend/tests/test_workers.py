"""The worker base: one unit of work at a time, a stop flag, and /livez /readyz /metrics on its port."""

import json
import threading
import time

import pytest

from gxbackend.testing import http_get
from gxbackend.workers import WorkerCommand

pytestmark = pytest.mark.django_db


class CountingWorker(WorkerCommand):
    worker_name = "counting"
    idle_seconds = 30.0

    def __init__(self, work_items: int) -> None:
        super().__init__()
        self.remaining = work_items
        self.units = 0
        self.ready = (True, "leader")

    def run_unit(self) -> bool:
        self.units += 1
        if self.remaining:
            self.remaining -= 1
            return True
        return False

    def is_ready(self):
        return self.ready


def test_it_calls_the_unit_again_at_once_while_it_finds_work_and_returns_when_idle_once():
    worker = CountingWorker(work_items=5)
    worker.loop(once=True)
    assert worker.units == 6  # five with work, one that found nothing


def test_a_stop_request_wakes_the_idle_sleep_promptly():
    worker = CountingWorker(work_items=0)
    thread = threading.Thread(target=worker.loop)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    worker.stopping.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2, "idle sleep of 30 s was cut short by the stop flag"


def test_its_http_port_answers_livez_readyz_and_metrics(settings):
    settings.WORKER_METRICS_HOST = "127.0.0.1"
    worker = CountingWorker(work_items=0)
    worker.start_metrics_server(0)
    port = worker.metrics_server.server_address[1]
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/livez")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = http_get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and json.loads(body)["detail"] == "leader"

        worker.ready = (False, "standby: waiting for the leader lock")
        status, body = http_get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503 and "standby" in json.loads(body)["detail"]

        worker.heartbeat -= settings.WORKER_HEARTBEAT_TIMEOUT + 1  # the loop is stuck
        status, _ = http_get(f"http://127.0.0.1:{port}/livez")
        assert status == 503

        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"# TYPE" in body
    finally:
        worker.metrics_server.shutdown()


def test_after_setup_the_start_up_heap_is_frozen_and_the_young_generation_enlarged():
    import gc
    import signal

    from gxbackend.workers import GC_YOUNG_THRESHOLD

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        CountingWorker(work_items=1).handle(once=True, metrics_port=-1)
        assert gc.get_freeze_count() > 10_000  # Django and everything imported at start-up
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_a_worker_whose_metrics_port_is_taken_exits_non_zero_with_one_line_naming_the_port():
    import os
    import socket
    import subprocess
    import sys

    from django.conf import settings as django_settings

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "WORKER_METRICS_HOST": "127.0.0.1"}
        done = subprocess.run([sys.executable, "manage.py", "run_projector", "--metrics-port", str(port)],
                              cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"CommandError: cannot serve metrics on 127.0.0.1:{port}: Address already in use (another process listens"
        " there? set PROJECTOR_METRICS_PORT or --metrics-port)")


class FlakyDatabaseWorker(CountingWorker):
    """Its second unit meets the database restarting; its fourth, a schema error."""

    def run_unit(self) -> bool:
        from django.db import OperationalError, ProgrammingError

        self.units += 1
        if self.units == 2:
            raise OperationalError("terminating connection due to administrator command\nSSL SYSCALL error")
        if self.units == 4:
            raise ProgrammingError('relation "projector_checkpoint" does not exist')
        return True


def test_the_loop_outlives_the_database_restarting_but_not_a_schema_error(monkeypatch, caplog):
    from django.db import ProgrammingError

    from gxbackend import workers

    monkeypatch.setattr(workers, "OUTAGE_PAUSE_SECONDS", 0.01)
    worker = FlakyDatabaseWorker(work_items=0)
    with caplog.at_level("WARNING", logger="gxbackend.workers"), pytest.raises(ProgrammingError):
        worker.loop()
    assert worker.units == 4
    assert [r.getMessage() for r in caplog.records] == [
        "counting: database unavailable (OperationalError: terminating connection due to administrator command);"
        " trying again in 0 s"]


def test_with_once_a_database_error_ends_the_loop():
    from django.db import OperationalError

    worker = FlakyDatabaseWorker(work_items=0)
    with pytest.raises(OperationalError):
        worker.loop(once=True)
    assert worker.units == 2
