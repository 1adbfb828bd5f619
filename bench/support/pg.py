"""A private PostgreSQL cluster for a benchmark that must count *all* of the database's CPU.

Backends come and go (a connection per batch, per thread): sampling them misses the short-lived ones. In a
cluster of its own, the postmaster's reaped children (``cutime``/``cstime``) plus its live children are exactly
the CPU the database spent for the benchmark, checkpointer and WAL writer included. The cluster runs as the
``postgres`` user (initdb refuses root) from the server binaries of this machine, on a free loopback port.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.support.cpu import children_of, cpu_seconds
from gxbackend.testing import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise SystemExit(f"{name} not found under /usr/lib/postgresql/*/bin (install the postgresql package)")
    return found[-1]


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PrivatePostgres:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.url = f"postgres://postgres@127.0.0.1:{port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    @property
    def postmaster_pid(self) -> int:
        return int((self.directory / "data" / "postmaster.pid").read_text().split()[0])

    def cpu_seconds(self) -> float:
        """Every CPU second the cluster has spent: the postmaster, its live and its exited children."""
        pid = self.postmaster_pid
        return cpu_seconds(pid, children=True) + sum(cpu_seconds(child) for child in children_of(pid))


@contextlib.contextmanager
def private_postgres(*, settings: dict[str, str] | None = None) -> Iterator[PrivatePostgres]:
    directory = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    shutil.chown(directory, "postgres") if os.geteuid() == 0 else None
    port = free_port()
    data = directory / "data"
    subprocess.run(_as_postgres([_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                 "--no-sync"]), check=True, capture_output=True, timeout=120)
    options = {"listen_addresses": "'127.0.0.1'", "port": str(port), "unix_socket_directories": f"'{directory}'",
               "max_connections": "200", "shared_buffers": "128MB", **(settings or {})}
    with (data / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{k} = {v}\n" for k, v in options.items())
    subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w", "-t", "60",
                                 "start"]), check=True, capture_output=True, timeout=90)
    try:
        yield PrivatePostgres(directory, port)
    finally:
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)
