"""``manage.py run_stack``: the whole system in the foreground, for development (``make run``).

Starts devnet (unless ``--no-devnet``), the API under gunicorn, one outbox submitter and the projector as child
processes, prints where everything answers, and stops them all on Ctrl-C / SIGTERM. If one child dies the others
are stopped too and the command exits 1 naming it, so a broken stack is never half up. A port another
process holds is refused before anything starts, in one line naming the port and the variable that moves it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gxbackend.testing import ROOT, stop_process, wait_for_http


class Command(BaseCommand):
    help = "Run devnet, the API, one submitter and the projector in the foreground (Ctrl-C stops all)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--api-port", type=int, default=3001, help="make run: API_PORT=")
        parser.add_argument("--no-devnet", action="store_true", help="use the peer at FABRIC_PEER_ENDPOINT")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")

    def handle(self, *args: Any, **options: Any) -> None:
        self._refuse_taken_ports(options["api_port"], devnet=not options["no_devnet"])
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        try:
            if not options["no_devnet"]:
                self._start_devnet(env)
            self._start_api(env, options["api_port"], options["workers"])
            self._spawn("submitter", [sys.executable, "manage.py", "run_submitter",
                                      "--metrics-port", str(settings.SUBMITTER_METRICS_PORT)], env)
            self._spawn("projector", [sys.executable, "manage.py", "run_projector",
                                      "--metrics-port", str(settings.PROJECTOR_METRICS_PORT)], env)
            self._announce(options["api_port"])
            failed = self._supervise()
        finally:
            self._stop_all()
        if failed:
            raise CommandError(f"{failed} exited unexpectedly; the whole stack was stopped (see its log above)")

    def _refuse_taken_ports(self, api_port: int, *, devnet: bool) -> None:
        host, _, port = settings.FABRIC_PEER_ENDPOINT.rpartition(":")
        wanted = [(api_port, "API_PORT (make run API_PORT=3002) or --api-port", "127.0.0.1"),
                  (settings.SUBMITTER_METRICS_PORT, "SUBMITTER_METRICS_PORT", settings.WORKER_METRICS_HOST),
                  (settings.PROJECTOR_METRICS_PORT, "PROJECTOR_METRICS_PORT", settings.WORKER_METRICS_HOST)]
        if devnet:
            wanted.insert(0, (int(port), "FABRIC_PEER_ENDPOINT", host or "127.0.0.1"))
        for number, variable, bind_host in wanted:
            if number and _port_taken(bind_host, number):
                raise CommandError(f"port {number} is already in use by another process: set {variable} to a "
                                   "free port, or stop that process")

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        # Own session: Ctrl-C reaches only this supervisor, which then stops children in order.
        process = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)  # noqa: S603
        self.children.append((name, process))
        return process

    def _start_devnet(self, env: dict[str, str]) -> None:
        host, _, port = settings.FABRIC_PEER_ENDPOINT.rpartition(":")
        process = self._spawn("devnet", [sys.executable, "manage.py", "run_devnet"], env)
        deadline = time.monotonic() + 60
        cert, key = Path(settings.FABRIC_CERT_PATH), Path(settings.FABRIC_KEY_PATH)
        while not (cert.exists() and key.exists() and _port_open(host or "127.0.0.1", int(port))):
            if process.poll() is not None or self.stopping or time.monotonic() > deadline:
                raise CommandError(f"devnet did not start (credentials expected at {cert} and {key})")
            time.sleep(0.2)

    def _start_api(self, env: dict[str, str], port: int, workers: int) -> None:
        multiproc = Path(settings.VAR_DIR) / "prometheus"
        api_env = dict(env, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS=str(workers),
                       PROMETHEUS_MULTIPROC_DIR=str(multiproc), GUNICORN_WORKER_TMP_DIR=str(settings.VAR_DIR))
        process = self._spawn("api", [sys.executable, "-m", "gunicorn", "-c",
                                      str(ROOT / "deploy" / "gunicorn.conf.py")], api_env)
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=60, process=process)

    def _announce(self, port: int) -> None:
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(self.style.SUCCESS("gxbackend is running (Ctrl-C stops everything):"))
        for label, url in [
            ("API", f"{base}/api/v1/"),
            ("API docs (Swagger)", f"{base}/api/docs/"),
            ("admin (KYC review)", f"{base}/admin/  — create a login: python manage.py createsuperuser"),
            ("health", f"{base}/health  {base}/readyz  {base}/metrics"),
            ("submitter metrics", f"http://127.0.0.1:{settings.SUBMITTER_METRICS_PORT}/metrics"),
            ("projector metrics", f"http://127.0.0.1:{settings.PROJECTOR_METRICS_PORT}/metrics"),
            ("Fabric peer", settings.FABRIC_PEER_ENDPOINT),
        ]:
            self.stdout.write(f"  {label:<20} {url}")
        self.stdout.flush()

    def _supervise(self) -> str | None:
        while not self.stopping:
            for name, process in self.children:
                if process.poll() is not None:
                    return name
            time.sleep(0.2)
        return None

    def _stop_all(self) -> None:
        # Workers first (they hand back leases), the API, devnet last (the workers still talk to it).
        for _name, process in reversed(self.children):
            stop_process(process, timeout=30)


def _port_taken(host: str, port: int) -> bool:
    """True when binding ``host:port`` fails because something else holds it (what our server would hit)."""
    import errno
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is not taken
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _port_open(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
