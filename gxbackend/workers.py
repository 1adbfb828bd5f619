"""Base for long-running management commands (docs/STYLE.md conventions 1–2).

A worker is a loop around one unit of work: ``unit() -> bool`` (True: it found work, call again at once;
False: idle, sleep ``idle_seconds`` in short slices so a signal is noticed quickly). SIGTERM/SIGINT only set
``self.stopping``; the loop finishes the unit in progress, the subclass hands back what it holds in
``on_stop()``, and the command exits 0.

Every worker serves ``/metrics``, ``/livez`` (``is_live()``: the loop's heartbeat is fresh, plus whatever the
subclass adds, e.g. its own threads) and ``/readyz`` (``is_ready()``) on its metrics port from a small HTTP
server thread.

After ``setup()`` the heap is settled for a long life (:func:`settle_heap`).
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError, close_old_connections
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

logger = logging.getLogger("gxbackend.workers")
OUTAGE_PAUSE_SECONDS = 1.0  # after a unit failed on the database being away

# Young-generation size of a worker's garbage collector (CPython's default is 700 allocations).
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Moves what start-up built (Django, protobuf descriptors, gRPC: ~200,000 objects) out of the garbage
    collector's reach and collects the young generation less often.

    A worker allocates many short-lived objects per unit (decoded payloads, rows) beside that large permanent
    heap. With CPython's defaults a trickle of them is promoted to the old generation and every full
    collection walks the whole heap while holding the GIL: in bench/projector.py five full collections took
    0.66 s of 2.1 s of Python CPU; settled, all collections together take ~0.15 s. Called once, after setup.
    """
    gc.collect()  # nothing collectable is frozen (it would never be freed)
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


class WorkerCommand(BaseCommand):
    """Subclasses implement ``setup()``, ``run_unit()`` and optionally ``on_stop()``, ``is_ready()`` and
    ``is_live()``."""

    worker_name = "worker"
    metrics_port_setting = ""
    idle_seconds = 1.0
    sleep_slice = 0.1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()
        self.heartbeat = time.monotonic()
        self.metrics_server: ThreadingHTTPServer | None = None

    # -- hooks ------------------------------------------------------------------------------------------
    def setup(self, **options: Any) -> None:
        """Prepare connections before the loop starts."""

    def run_unit(self) -> bool:
        raise NotImplementedError

    def on_stop(self) -> None:
        """Finish or hand back in-flight work; called once when the loop ends."""

    def is_ready(self) -> tuple[bool, str]:
        return True, "ok"

    def is_live(self) -> tuple[bool, str]:
        """False (``/livez`` 503: Kubernetes restarts the pod) when the loop has not beaten for
        ``WORKER_HEARTBEAT_TIMEOUT``; subclasses add their own threads' health."""
        age = self.heartbeat_age()
        return age < settings.WORKER_HEARTBEAT_TIMEOUT, f"heartbeat {age:.1f}s ago"

    # -- machinery --------------------------------------------------------------------------------------
    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--metrics-port", type=int, default=None,
                            help="port for /metrics, /livez and /readyz (0 picks a free one; -1 disables)")
        parser.add_argument("--once", action="store_true", help="run units until idle once, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        self.install_signal_handlers()
        port = options.get("metrics_port")
        if port is None:
            port = getattr(settings, self.metrics_port_setting, 0) if self.metrics_port_setting else 0
        if port >= 0:
            self.start_metrics_server(port)
        self.setup(**options)
        settle_heap()
        logger.info("%s started", self.worker_name, extra={"worker": self.worker_name})
        try:
            self.loop(once=options.get("once", False))
        finally:
            self.on_stop()
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
            logger.info("%s stopped", self.worker_name, extra={"worker": self.worker_name})

    def install_signal_handlers(self) -> None:
        def request_stop(signum: int, frame: object) -> None:
            logger.info("%s received %s, stopping", self.worker_name, signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def loop(self, *, once: bool = False) -> None:
        while not self.stopping.is_set():
            self.beat()
            outage = False
            try:
                found_work = self.run_unit()
            except (OperationalError, InterfaceError) as exc:
                # The database restarting or unreachable is an outage a long-running worker outlives (the
                # unit's own handling comes first; this is the net under it). Errors of the schema or the SQL
                # (ProgrammingError, IntegrityError...) still end the process, as does any error with --once.
                if once:
                    raise
                said = (str(exc).strip().splitlines() or [""])[0]
                logger.warning("%s: database unavailable (%s: %s); trying again in %.0f s", self.worker_name,
                               type(exc).__name__, said, OUTAGE_PAUSE_SECONDS, extra={"worker": self.worker_name})
                found_work, outage = False, True
            finally:
                # A worker lives for days: drop connections that broke or outlived CONN_MAX_AGE.
                close_old_connections()
            if outage:
                self.sleep(OUTAGE_PAUSE_SECONDS)
                continue
            if found_work:
                continue
            if once:
                return
            self.sleep(self.idle_seconds)

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleeps in short slices, waking at once on a stop request or when :meth:`wait` reports new work;
        the heartbeat stays fresh."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            woke = self.wait(min(self.sleep_slice, remaining))
            self.beat()
            if woke:
                return

    def wait(self, timeout: float) -> bool:
        """Blocks up to ``timeout`` seconds; True when new work may have arrived (e.g. a NOTIFY)."""
        self.stopping.wait(timeout)
        return False

    def heartbeat_age(self) -> float:
        return time.monotonic() - self.heartbeat

    def start_metrics_server(self, port: int) -> None:
        try:
            self.metrics_server = serve_worker_http(
                settings.WORKER_METRICS_HOST, port,
                live=self.is_live,
                ready=self.is_ready,
            )
        except OSError as exc:
            choose = f"set {self.metrics_port_setting} or --metrics-port" if self.metrics_port_setting else \
                "pass --metrics-port"
            raise CommandError(f"cannot serve metrics on {settings.WORKER_METRICS_HOST}:{port}: {exc.strerror}"
                               f" (another process listens there? {choose})") from exc
        bound = self.metrics_server.server_address[1]
        logger.info("%s metrics on :%s", self.worker_name, bound, extra={"metrics_port": bound})


def serve_worker_http(
    host: str, port: int, *, live: Callable[[], tuple[bool, str]], ready: Callable[[], tuple[bool, str]]
) -> ThreadingHTTPServer:
    """Starts a daemon thread answering /metrics, /livez and /readyz."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                # This process's own registry: a worker runs one process, and importing the API's HTTP
                # metrics (gxbackend.metrics) would export their empty families here too.
                self.respond(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/livez", "/readyz", "/health"):
                ok, detail = live() if path != "/readyz" else ready()
                payload = {"status": "ok" if ok else "unavailable", "detail": detail}
                self.respond(200 if ok else 503, json.dumps(payload).encode(), "application/json")
            else:
                self.respond(404, b'{"error": {"code": "not_found", "message": "Not found.", "fields": {}}}',
                             "application/json")

        def respond(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server
