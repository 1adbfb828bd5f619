"""The acceptance run's HTTP client: what a well-behaved API client does, with every response recorded.

A request that gets no answer (connection refused or cut: the API restarting) or a 503 (a dependency down) is
sent again after a short pause with the *same* headers, Idempotency-Key included, until ``give_up_after``
seconds have passed: that is the retry contract the API's idempotency promises support. Each answer, the
503s included, is kept as a :class:`Sample` for the latency figures and the "no 5xx outside the PostgreSQL
outage" check.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

RETRY_PAUSE = 0.25


@dataclass(frozen=True)
class Sample:
    endpoint: str
    started: float  # time.time()
    seconds: float
    status: int
    json_error: bool  # the body is the API's JSON error shape


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: list[Sample] = []
        self.connection_retries = 0

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def retried_connection(self) -> None:
        with self.lock:
            self.connection_retries += 1


class GaveUp(Exception):
    pass


class Client:
    """One client thread's keep-alive connection to the API."""

    def __init__(self, port: int, recorder: Recorder, *, give_up_after: float = 180.0) -> None:
        self.port = port
        self.recorder = recorder
        self.give_up_after = give_up_after
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return self.conn

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def request(self, endpoint: str, method: str, path: str, body: Any = None, *, token: str | None = None,
                headers: dict[str, str] | None = None, form: bytes | None = None, retry_503: bool = True) -> Answer:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        payload = None
        if form is not None:
            payload = form
            all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        deadline = time.monotonic() + self.give_up_after
        while True:
            started = time.time()
            clock = time.perf_counter()
            try:
                conn = self._connection()
                conn.request(method, path, body=payload, headers=all_headers)
                response = conn.getresponse()
                raw = response.read()
                answer_headers: dict[str, str] = {}
                for name, value in response.getheaders():
                    name = name.lower()
                    answer_headers[name] = f"{answer_headers[name]}, {value}" if name in answer_headers else value
                if answer_headers.get("connection", "").lower() == "close":
                    self._drop()
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
                # No answer: the server restarted or cut the connection. The request may or may not have been
                # handled; sending it again with the same Idempotency-Key is safe.
                self._drop()
                self.recorder.retried_connection()
                if time.monotonic() > deadline:
                    raise GaveUp(f"{method} {path}: no answer for {self.give_up_after}s") from None
                time.sleep(RETRY_PAUSE)
                continue
            seconds = time.perf_counter() - clock
            parsed: Any = None
            json_error = False
            if raw and answer_headers.get("content-type", "").startswith("application/json"):
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
                json_error = isinstance(parsed, dict) and isinstance(parsed.get("error"), dict) \
                    and {"code", "message"} <= set(parsed["error"])
            elif raw:
                parsed = raw.decode(errors="replace")
            self.recorder.add(Sample(endpoint, started, seconds, response.status, json_error))
            if response.status == 503 and retry_503 and time.monotonic() < deadline:
                time.sleep(RETRY_PAUSE * 2)
                continue
            return Answer(response.status, parsed, answer_headers)
