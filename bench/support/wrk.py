"""Runs ``wrk`` (a C HTTP load generator) and reads its figures, including the CPU wrk itself used.

wrk is a Debian package (``apt-get install wrk``); :func:`require_wrk` stops a benchmark with one line saying so.
Requests are described by a small Lua script (method, body, one header set per connection, cycled), and the
script's ``done`` hook prints the figures as JSON, so nothing is scraped from wrk's human-readable report.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "wrk is missing: install it with `apt-get install wrk` (Debian/Ubuntu package `wrk`)"

_SCRIPT = """
local headers_list = %(headers)s
local method, body = %(method)s, %(body)s
local counter = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counter = 0; bad = 0 end
function request()
  counter = counter + 1
  return wrk.format(method, nil, headers_list[(counter %% #headers_list) + 1], body)
end
function response(status, headers, body)
  if status ~= %(status)d then bad = bad + 1 end
end
function done(summary, latency, requests)
  local wrong = 0
  for _, t in ipairs(threads) do wrong = wrong + t:get("bad") end
  io.write(string.format('WRK_JSON {"requests": %%d, "seconds": %%f, "wrong_status": %%d, '
    .. '"socket_errors": %%d, "p50_ms": %%f, "p99_ms": %%f}\\n',
    summary.requests, summary.duration / 1e6, wrong,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    wrong_status: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # what wrk itself used (user + system)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit(INSTALL_HINT)
    return path


def _lua(value: str | None) -> str:
    return "nil" if value is None else json.dumps(value)  # a JSON string is a valid Lua string literal


def run_wrk(url: str, *, method: str = "GET", body: str | None = None, headers: list[dict[str, str]],
            status: int = 200, connections: int = 8, threads: int = 1, seconds: float = 3.0) -> WrkResult:
    """Drives ``url`` for ``seconds`` with ``connections`` keep-alive connections; every response must have
    ``status`` (the benchmark fails otherwise). ``headers`` are cycled request by request."""
    table = "{" + ", ".join("{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in h.items()) + "}"
                            for h in headers) + "}"
    script = _SCRIPT % {"headers": table, "method": _lua(method), "body": _lua(body), "status": status}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [require_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
             "--timeout", "30s", "-s", handle.name, url], capture_output=True, text=True, timeout=seconds + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        Path(handle.name).unlink()
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    figures = json.loads(line.removeprefix("WRK_JSON "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = WrkResult(cpu_seconds=cpu, **figures)
    if result.wrong_status or result.socket_errors:
        raise RuntimeError(f"{method} {url}: {result.wrong_status} responses other than {status}, "
                           f"{result.socket_errors} socket errors")
    return result
