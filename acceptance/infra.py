"""The acceptance run's own services and processes: a private PostgreSQL cluster, a private Redis, devnet,
gunicorn, the submitters and the projectors, each restartable and killable without touching anything else on
the machine.

The shared PostgreSQL and Redis of the machine are never used: faults restart *these* instances. Every child
runs in its own session (process group) so a kill reaches its children too; :meth:`Stack.close` stops all of
them, on success, on failure and at interpreter exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from fabric_client.devnet.process import DevnetProcess
from gxbackend.testing import ROOT, free_port, http_get, wait_for_http

PG_BIN = Path(os.environ.get("ACCEPTANCE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres_user() -> dict:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` account when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres"}


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb into ``directory``), fsync on, on a free loopback port."""

    def __init__(self, directory: Path, log: Path) -> None:
        self.directory = directory
        self.log = log
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/gxbackend"

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        subprocess.run([str(PG_BIN / args[0]), *args[1:]], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **_as_postgres_user())

    def start(self) -> PrivatePostgres:
        self.directory.mkdir(parents=True)
        self.log.touch()
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (self.directory, self.log):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.directory), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self._options = " ".join([
            f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.directory}",
            "-c fsync=on", "-c shared_buffers=128MB", "-c max_connections=200", "-c synchronous_commit=on",
        ])
        self._start()
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE gxbackend")
        return self

    @property
    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _start(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory), "-l", str(self.log), "-o", self._options, "-w", "-t", "60",
                  "start")

    def restart_fast(self, outage: float = 1.0) -> None:
        """``pg_ctl stop -m fast``, ``outage`` seconds down, then started again on the same port: sessions are
        cut, and the outage lasts long enough for every client and probe to meet it (a bare ``restart`` on a
        quiet machine was over before the 0.2 s /readyz poller looked)."""
        self._run("pg_ctl", "-D", str(self.directory), "-m", "fast", "-w", "-t", "60", "stop")
        time.sleep(outage)
        self._start()

    def stop(self) -> None:
        if not (self.directory / "postmaster.pid").exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.directory), "-m", "immediate", "-w", "-t", "30", "stop", timeout=40)
        except (subprocess.SubprocessError, OSError):
            with contextlib.suppress(Exception):
                pid = int((self.directory / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)


class PrivateRedis:
    """``redis-server`` on a free loopback port, no persistence (as the machine's own)."""

    def __init__(self, directory: Path, log: Path) -> None:
        self.directory = directory
        self.log = log
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return self
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Child:
    """One long-running process of the stack (its own session, output to a log file), restartable."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 ready_url: str | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_dir = log_dir
        self.ready_url = ready_url
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 90.0) -> Child:
        self.starts += 1
        self._log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if self.ready_url:
            wait_for_http(self.ready_url, timeout=timeout, process=self.process)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL to the whole process group (gunicorn's workers die with their master)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 45.0) -> int | None:
        """SIGTERM and wait; SIGKILL after ``timeout``. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the group
        if self._log is not None:
            self._log.close()
        return self.process.returncode


class Devnet:
    """Devnet as a child process with TLS, restartable on its ledger and its port."""

    def __init__(self, directory: Path, log: Path, *, block_ms: int) -> None:
        self.directory = directory
        self.log = log
        self.block_ms = block_ms
        self.process: DevnetProcess | None = None
        self.port = 0
        self.starts = 0

    def start(self) -> Devnet:
        self.starts += 1
        with open(self.log, "ab") as log:
            self.process = DevnetProcess(self.directory, port=self.port, block_timeout_ms=self.block_ms,
                                         block_size=50, extra_args=("--tls",), stderr=log).start(timeout=60)
        self.port = self.process.port
        return self

    @property
    def env(self) -> dict[str, str]:
        assert self.process is not None
        return self.process.env

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.process.pid

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()

    def terminate(self) -> int:
        assert self.process is not None
        return self.process.terminate(timeout=30)

    def height(self) -> int:
        """Blocks on the chain (read from the ledger file, as GetChainInfo would answer)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.directory / 'ledger.sqlite3'}?mode=ro",
                                                uri=True, timeout=10)) as conn:
            return conn.execute("SELECT COALESCE(MAX(number) + 1, 0) FROM blocks").fetchone()[0]

    def ledger(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.directory / 'ledger.sqlite3'}?mode=ro", uri=True, timeout=10)


def production_env(*, database_url: str, redis_url: str, fabric: dict[str, str], run_dir: Path) -> dict[str, str]:
    """The environment of every process: DEBUG off, real secrets, the private services, devnet over TLS."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "FABRIC_", "OUTBOX_", "PROJECTOR_", "THROTTLE_", "GUNICORN_", "LOGIN_"))}
    env.update(fabric)
    env.update({
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GX_VAR_DIR": str(run_dir / "var"),
        "STATIC_ROOT": str(run_dir / "static"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        # One client address drives everyone: the per-IP abuse limits are an operator's knob, opened here.
        "THROTTLE_REGISTER": "100000/hour",
        "THROTTLE_LOGIN": "100000/min",
        "THROTTLE_KYC": "100000/hour",
        "THROTTLE_TRANSFER": "100000/min",
        # A killed submitter's leases come back after this long (the default 60 s would stretch every run).
        "OUTBOX_LEASE_SECONDS": "15",
        "PROJECTOR_HEIGHT_POLL_SECONDS": "1",
        "PROJECTOR_STANDBY_POLL_SECONDS": "1",
    })
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def worker_role(port: int) -> str:
    """``leader`` / ``standby`` / ``down`` from a projector's /readyz detail."""
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except OSError:
        return "down"
    text = body.decode(errors="replace")
    if "standby" in text:
        return "standby"
    return "leader" if status == 200 or "leader" in text else "down"
