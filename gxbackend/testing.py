"""Helpers for tests and benchmarks that run real processes (gunicorn, workers) on loopback."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unused_listen_port(taken: set[int]) -> int:
    """A loopback port that nothing listens on now and that is not in ``taken`` (it is added to it).

    For servers started together, each binding its port later (containers on the host network): ports from
    :func:`free_port` are released at once, so two calls may return the same one, and a port of the
    kernel's ephemeral range may be taken meanwhile as the local port of any outgoing connection. These come
    from just below that range, where neither happens.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = [port for port in range(max(1024, low - 8192), low) if port not in taken]
    for port in random.sample(candidates, len(candidates)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free loopback port below {low}")


def http_get(url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback URLs built by tests
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for_http(url: str, *, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Polls ``url`` until it answers at all (any status); fails early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            http_get(url, timeout=1.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop_process(process: subprocess.Popen, *, timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def running_gunicorn(
    env: dict[str, str], *, workers: int = 2, threads: int = 1, port: int | None = None,
    multiproc_dir: Path | None = None, stdout=None,
) -> Iterator[str]:
    """Runs the API under gunicorn with deploy/gunicorn.conf.py; yields its base URL."""
    port = port or free_port()
    env = dict(env, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS=str(workers),
               GUNICORN_THREADS=str(threads))
    if multiproc_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and config
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
        cwd=ROOT, env=env, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.STDOUT if stdout else None,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", process=process)
        yield base
    finally:
        stop_process(process)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def create_scratch_database(suffix: str) -> str:
    """A fresh, empty PostgreSQL database named after ``DATABASE_URL``'s plus ``_suffix``; returns its URL.

    Benchmarks run several processes (gunicorn workers, submitters) against it, so it must be a real,
    committed database rather than a test transaction. Drop it with :func:`drop_scratch_database`.
    """
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit(f"{Path(sys.argv[0]).name} needs DATABASE_URL=postgres://… (several processes share the database)")
    parts = urlsplit(url)
    scratch = urlunsplit(parts._replace(path=parts.path.rstrip("/") + f"_{suffix}"))
    name = urlsplit(scratch).path.lstrip("/")
    _admin_sql(scratch, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_sql(scratch, f'CREATE DATABASE "{name}"')
    return scratch


def drop_scratch_database(url: str) -> None:
    from django.db import connections

    connections.close_all()
    _admin_sql(url, f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')


def _admin_sql(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(sql)


def indexes_planned(sql: str, params=None, *, without: tuple[str, ...] = (), using: str = "default") -> list[str]:
    """The indexes PostgreSQL's plan for ``sql`` reads, in plan order (one entry per scan), with sequential scans
    disabled: a test table of a few rows would otherwise always be read whole, whatever the indexes allow.
    ``without``: indexes dropped first, to see what the plan falls back on (which index the planner prefers among
    several depends on table statistics; which ones it *can* use does not). EXPLAIN only: ``sql`` (with its
    ``params``, if any) is planned, not run. Inside a test's transaction, which undoes the drops and the setting."""
    import json

    from django.db import connections

    found: list[str] = []

    def walk(node: dict) -> None:
        if "Index Name" in node:
            found.append(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    with connections[using].cursor() as cursor:
        for index in without:
            cursor.execute(f'DROP INDEX "{index}"')
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
        cursor.execute("SET LOCAL enable_seqscan = on")
    walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return found
