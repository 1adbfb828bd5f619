"""Run devnet as a child process (for tests that kill, stop and restart it).

    devnet = DevnetProcess(tmp_path / "devnet", block_timeout_ms=50).start()
    os.environ.update(devnet.env)          # FABRIC_PEER_ENDPOINT, FABRIC_CERT_PATH, ...
    devnet.terminate()                     # SIGTERM: pending transactions are cut into a block, exit 0
    devnet = DevnetProcess(tmp_path / "devnet", port=devnet.port).start()   # same chain, same port
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

READY = "devnet ready"
"""The line ``python -m fabric_client.devnet`` prints once it serves (after its ``export`` lines)."""


class DevnetProcess:
    """``python -m fabric_client.devnet`` in a subprocess, with its printed environment parsed."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        block_timeout_ms: int = 250,
        block_size: int = 10,
        extra_args: tuple[str, ...] = (),
        stderr: Any = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.command = [
            sys.executable, "-m", "fabric_client.devnet",
            "--data-dir", str(self.data_dir), "--host", host, "--port", str(port),
            "--block-timeout-ms", str(block_timeout_ms), "--block-size", str(block_size), *extra_args,
        ]
        self.stderr = stderr  # where its log goes (a file, DEVNULL); None: this process's stderr
        self.env: dict[str, str] = {}
        self.output: list[str] = []
        self._process: subprocess.Popen[str] | None = None

    @property
    def process(self) -> subprocess.Popen[str]:
        if self._process is None:
            raise RuntimeError("devnet process not started")
        return self._process

    @property
    def endpoint(self) -> str:
        return self.env["FABRIC_PEER_ENDPOINT"]

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def start(self, timeout: float = 30.0) -> DevnetProcess:
        """Start it and wait for ``devnet ready``; raise with its output if it exits or hangs."""
        source_root = str(Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))
        process = subprocess.Popen(  # noqa: S603 - our own module with our own arguments
            self.command, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env={**os.environ, "PYTHONPATH": python_path},
        )
        self._process = process
        watchdog = threading.Timer(timeout, self.kill)  # a hung start ends the read loop below
        watchdog.start()
        try:
            for line in process.stdout or ():
                line = line.rstrip("\n")
                self.output.append(line)
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").partition("=")
                    self.env[name] = value
                elif line == READY:
                    return self
        finally:
            watchdog.cancel()
        self.kill()
        raise RuntimeError(f"devnet did not start (exit code {process.poll()}): {self.output}")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; return the exit code (0 on a clean stop)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (a crash): transactions not yet cut into a block are lost."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> DevnetProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self.terminate()
