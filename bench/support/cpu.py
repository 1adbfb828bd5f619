"""CPU seconds of processes, read from ``/proc/<pid>/stat``, for "CPU per unit of work" figures.

On a shared machine wall-clock rates measure the neighbours as much as the code; the CPU a piece of work costs
travels. :class:`CpuMeter` samples a set of processes in a background thread, so a process that exits during a
measurement (a gunicorn worker recycled by ``max_requests``, a PostgreSQL backend whose connection closed) still
counts with its last sample.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of ``pid`` (plus its waited-for children's with ``children``); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def postgres_backends(database: str) -> list[int]:
    """The PostgreSQL backend processes serving ``database`` on this machine (their title names the database)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # "postgres: [<cluster>: ]<user> <database> <client> <state>" (Debian names the cluster: "15/main:")
        parts = title.replace(b"\0", b" ").split()
        if not parts or parts[0] != b"postgres:":
            continue
        if len(parts) > 1 and parts[1].endswith(b":"):
            parts = parts[1:]
        if len(parts) >= 3 and parts[2].decode(errors="replace") == database:
            found.append(int(entry.name))
    return found


def machine_busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy = (after[0] - before[0])
    total = (after[1] - before[1])
    return busy / total if total else 0.0


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # steal included, guest already counted in user
    return total - idle, total


class CpuMeter:
    """CPU seconds spent by the processes ``pids()`` names, between :meth:`start` and :meth:`stop`.

    ``pids`` is called at each sample (every ``interval`` seconds), so processes that appear are picked up; a
    process's CPU counts from its first sample (or from 0 when it appeared after :meth:`start`), up to its last.
    """

    def __init__(self, pids: Callable[[], Iterable[int]], *, interval: float = 0.25) -> None:
        self.pids = pids
        self.interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    def _sample(self) -> None:
        for pid in self.pids():
            value = cpu_seconds(pid)
            if value == 0.0 and pid not in self._first:
                continue
            if pid not in self._first:
                self._first[pid] = value if not self._started else 0.0
            self._last[pid] = max(self._last.get(pid, 0.0), value)

    def start(self) -> CpuMeter:
        self._sample()
        self._started = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            self._sample()

    def stop(self) -> float:
        """Stops sampling; returns the CPU seconds spent meanwhile."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        return sum(self._last[pid] - self._first[pid] for pid in self._last)


def measure(work: Callable[[], object], pids: Callable[[], Iterable[int]]) -> tuple[object, float, float]:
    """Runs ``work`` while metering ``pids``; returns (its result, CPU seconds, wall seconds)."""
    meter = CpuMeter(pids).start()
    started = time.perf_counter()
    result = work()
    wall = time.perf_counter() - started
    return result, meter.stop(), wall
