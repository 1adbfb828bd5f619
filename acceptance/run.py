"""``make acceptance``: the whole system under load and the faults production brings; nothing lost, nothing
doubled, with the figures.

    python -m acceptance                         # 200 people, 2,000 transfers, 20 clients, every fault
    ACCEPTANCE_SCALE=small python -m acceptance  # 30 people, 300 transfers, every fault (part of make test)
    ACCEPTANCE_FAULTS=postgres_restart,redis_restart python -m acceptance
    ACCEPTANCE_SEED=42 ACCEPTANCE_KEEP=1 python -m acceptance   # same plan; keep the logs even when it passes

It starts its own PostgreSQL cluster and Redis (never the machine's shared ones: those are what the faults
restart), devnet with TLS on an on-disk ledger, gunicorn with ``deploy/gunicorn.conf.py`` and DEBUG off, two
``run_submitter`` and two ``run_projector`` (leader and hot standby), and drives the API over HTTP only:
people register, log in and submit KYC; a staff reviewer approves them in the Django admin (its own action,
over HTTP); then concurrent clients send transfers across every fee band (some cross-border, ~10 % sent again
with the same Idempotency-Key, some refused for funds) while reading wallets, histories and command statuses.
Each fault of ``ACCEPTANCE_FAULTS`` (default: all of :data:`FAULTS`) is injected at a random moment of the
transfer phase; a fault that cannot be injected fails the run. Afterwards it waits (bounded) until the outbox
is drained and the projection has caught up, checks every promise, prints the figures as ``name = value unit``
lines and exits 1 when any check fails. Logs of every process stay under the run directory on failure.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acceptance.client import Client, GaveUp, Recorder  # noqa: E402
from acceptance.infra import (  # noqa: E402
    Child,
    Devnet,
    PrivatePostgres,
    PrivateRedis,
    manage,
    production_env,
    worker_role,
)
from fabric_client.devnet.chaincode import GENESIS_AMOUNT, transfer_fee  # noqa: E402
from gxbackend.testing import free_port, http_get  # noqa: E402

GX = 1_000_000
FAULTS = ("submitter_kill", "projector_leader_kill", "devnet_restart", "postgres_restart", "redis_restart",
          "rolling_restart")


@dataclass(frozen=True)
class Scale:
    people: int
    transfers: int
    clients: int
    slot_seconds: float  # the transfer phase lasts at least one slot per fault; a fault falls inside its slot


SCALES = {
    "full": Scale(people=200, transfers=2000, clients=20, slot_seconds=24.0),
    "small": Scale(people=30, transfers=300, clients=10, slot_seconds=13.0),
}
BLOCK_MS = 250
PASSWORD = "acceptance-Correct-Horse-42"
NATIONALITIES = ("NG", "NG", "NG", "NG", "GH", "KE")  # mostly one country; the others make cross-border pairs
DRAIN_TIMEOUT = 300.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the people -----------------------------------------------------------------------------------------
@dataclass
class Person:
    index: int
    email: str
    nationality: str
    id: str = ""
    onchain_id: str = ""
    access: str = ""
    refresh: str = ""
    kyc_id: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Accepted:
    key: str
    command_id: str
    sender: str
    requested_at: float
    amount: int
    band: str  # the fee band (docs/CHAINCODE.md), or "cross-border"


@dataclass
class Findings:
    """Everything the load saw that a check looks at."""

    accepted: list[Accepted] = field(default_factory=list)
    refused_for_funds: int = 0
    unexpected: list[str] = field(default_factory=list)
    fee_mismatches: list[str] = field(default_factory=list)
    replays: int = 0
    replay_mismatches: list[str] = field(default_factory=list)
    reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_unexpected(self, text: str) -> None:
        with self.lock:
            if len(self.unexpected) < 200:
                self.unexpected.append(text)


@dataclass
class FaultRecord:
    name: str
    started: float
    restored: float = 0.0
    detail: str = ""
    first_commit: float | None = None
    caught_up: float | None = None
    error: str = ""


class Run:
    def __init__(self, scale: Scale, faults: list[str], seed: int) -> None:
        self.scale = scale
        self.faults = faults
        self.rng = random.Random(seed)
        self.seed = seed
        self.dir = Path(tempfile.mkdtemp(prefix="gx-acceptance-"))
        os.chmod(self.dir, 0o755)  # noqa: S103 - the postgres account reaches its data directory through it
        self.recorder = Recorder()
        self.findings = Findings()
        self.people: list[Person] = []
        self.fault_records: list[FaultRecord] = []
        self.readyz: list[tuple[float, int]] = []
        self.stop_polling = threading.Event()
        self.faults_done = threading.Event()
        self.load_done = threading.Event()
        self.children: dict[str, Child] = {}
        self.pg: PrivatePostgres | None = None
        self.redis: PrivateRedis | None = None
        self.devnet: Devnet | None = None
        self.env: dict[str, str] = {}
        self.api_port = free_port()
        self.checks: list[tuple[str, bool, str]] = []
        self.figures: list[str] = []
        self.closed = False

    # -- the stack ------------------------------------------------------------------------------------
    def start_stack(self) -> None:
        logs = self.dir / "logs"
        logs.mkdir()
        self.pg = PrivatePostgres(self.dir / "pg", logs / "postgres.log").start()
        self.redis = PrivateRedis(self.dir / "redis", logs / "redis.log").start()
        self.devnet = Devnet(self.dir / "devnet", logs / "devnet.log", block_ms=BLOCK_MS).start()
        self.env = production_env(database_url=self.pg.url, redis_url=self.redis.url, fabric=self.devnet.env,
                                  run_dir=self.dir)
        log(f"private PostgreSQL :{self.pg.port}, Redis :{self.redis.port}, devnet :{self.devnet.port} (TLS); "
            f"run directory {self.dir}")
        for args in (("migrate", "--noinput"), ("collectstatic", "--noinput")):
            result = manage(self.env, *args)
            if result.returncode != 0:
                raise RuntimeError(f"manage.py {args[0]} failed: {result.stdout}{result.stderr}")
        self.staff_email = "reviewer@acceptance.example"
        result = manage({**self.env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}, "createsuperuser", "--noinput",
                        "--email", self.staff_email)
        if result.returncode != 0:
            raise RuntimeError(f"createsuperuser failed: {result.stdout}{result.stderr}")
        py = sys.executable
        api_env = {**self.env, "GUNICORN_BIND": f"127.0.0.1:{self.api_port}", "GUNICORN_WORKERS": "2",
                   "PROMETHEUS_MULTIPROC_DIR": str(self.dir / "prometheus"),
                   "GUNICORN_WORKER_TMP_DIR": str(self.dir)}
        self.children["api"] = Child("api", [py, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")],
                                     api_env, logs, ready_url=f"http://127.0.0.1:{self.api_port}/health")
        for n in (1, 2):
            port = free_port()
            self.children[f"submitter{n}"] = Child(
                f"submitter{n}", [py, "manage.py", "run_submitter", "--metrics-port", str(port)], self.env, logs,
                ready_url=f"http://127.0.0.1:{port}/livez")
        self.projector_ports: dict[str, int] = {}
        for n in (1, 2):
            port = free_port()
            self.projector_ports[f"projector{n}"] = port
            self.children[f"projector{n}"] = Child(
                f"projector{n}", [py, "manage.py", "run_projector", "--metrics-port", str(port)], self.env, logs,
                ready_url=f"http://127.0.0.1:{port}/livez")
        for child in self.children.values():
            child.start()
        self.wait_for(lambda: sorted(self.roles().values()) == ["leader", "standby"], 60,
                      "one projector leading and one on standby")
        log("stack up: gunicorn (2 workers x 4 threads), 2 submitters, projector leader + standby")

    def roles(self) -> dict[str, str]:
        return {name: worker_role(port) for name, port in self.projector_ports.items()}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop_polling.set()
        for child in self.children.values():
            with contextlib.suppress(Exception):
                child.kill9()
        for service in (self.devnet, self.redis, self.pg):
            if service is not None:
                with contextlib.suppress(Exception):
                    service.kill9() if isinstance(service, Devnet) else service.stop()

    @staticmethod
    def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return time.time()
            except Exception:  # noqa: S110 - a dependency restarting: ask again
                pass
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    # -- database reads for the harness (never used by the clients) -----------------------------------
    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        assert self.pg is not None
        with psycopg.connect(self.pg.url, connect_timeout=3) as conn:
            return conn.execute(query, params).fetchall()

    def checkpoint(self) -> int:
        rows = self.sql("SELECT block_number FROM projector_checkpoint")
        return rows[0][0] if rows else 0

    def events_after(self, block: int, end: int | None = None) -> int:
        assert self.devnet is not None
        with contextlib.closing(self.devnet.ledger()) as conn:
            if end is None:
                return conn.execute("SELECT COUNT(*) FROM events WHERE block >= ?", (block,)).fetchone()[0]
            return conn.execute("SELECT COUNT(*) FROM events WHERE block >= ? AND block < ?",
                                (block, end)).fetchone()[0]

    def caught_up_to(self, height: int) -> bool:
        """The read models hold every event of blocks below ``height`` (blocks without events cannot move the
        checkpoint: the event stream skips them)."""
        checkpoint = self.checkpoint()
        return checkpoint >= height or self.events_after(max(checkpoint, 1), height) == 0

    # -- onboarding -----------------------------------------------------------------------------------
    def onboard(self) -> None:
        run_tag = uuid.uuid4().hex[:8]
        self.people = [Person(i, f"person{i}.{run_tag}@acceptance.example", NATIONALITIES[i % len(NATIONALITIES)])
                       for i in range(self.scale.people)]
        started = time.time()
        self.parallel(self.register_login_kyc, self.people)
        log(f"{len(self.people)} people registered, logged in and submitted KYC in {time.time() - started:.1f}s")
        self.approve_in_admin()
        clients = [Client(self.api_port, self.recorder) for _ in range(4)]

        def all_active() -> bool:
            statuses = []
            for n, person in enumerate(self.people):
                answer = self.authed(clients[n % 4], person, "profile", "GET", "/api/v1/users/me")
                statuses.append(answer.body.get("status") if answer.status == 200 else None)
            return all(s == "ACTIVE" for s in statuses)

        self.wait_for(all_active, 240, "every approved person ACTIVE (UserCreated projected)", interval=1.0)
        log(f"everyone ACTIVE after {time.time() - started:.1f}s")

    def parallel(self, work: Callable, items: list) -> None:
        errors: list[BaseException] = []
        buckets = [items[i::self.scale.clients] for i in range(self.scale.clients)]

        def run(bucket: list) -> None:
            client = Client(self.api_port, self.recorder)
            try:
                for item in bucket:
                    work(client, item)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in buckets if b]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def register_login_kyc(self, client: Client, person: Person) -> None:
        answer = client.request("register", "POST", "/api/v1/users", {
            "email": person.email, "password": PASSWORD, "first_name": "Ada", "last_name": f"Person{person.index}",
            "date_of_birth": "1990-01-15", "nationality": person.nationality,
        }, headers={"Idempotency-Key": f"register-{person.email}"})
        expect(answer.status == 201, f"register {person.email}: {answer.status} {answer.body}")
        person.id = answer.body["id"]
        person.onchain_id = uuid.UUID(person.id).hex
        self.login(client, person)
        answer = self.authed(client, person, "kyc", "POST", f"/api/v1/users/{person.id}/kyc", {
            "document_type": "PASSPORT", "document_number": f"P{person.index:08d}", "issuing_country":
            person.nationality, "expiry_date": "2035-01-01", "document_sha256": f"{person.index:064x}",
            "biometric_hash": uuid.uuid4().hex * 2,
        }, headers={"Idempotency-Key": f"kyc-{person.email}"})
        expect(answer.status == 202, f"kyc {person.email}: {answer.status} {answer.body}")
        person.kyc_id = answer.body["id"]

    def login(self, client: Client, person: Person) -> None:
        answer = client.request("login", "POST", "/api/v1/auth/login", {"email": person.email, "password": PASSWORD})
        expect(answer.status == 200, f"login {person.email}: {answer.status} {answer.body}")
        person.access, person.refresh = answer.body["access"], answer.body["refresh"]

    def authed(self, client: Client, person: Person, endpoint: str, method: str, path: str, body=None,
               headers: dict | None = None):
        """A call as ``person``; an expired access token is refreshed (or the person logs in again)."""
        for _ in range(3):
            token = person.access
            answer = client.request(endpoint, method, path, body, token=token, headers=headers)
            if answer.status != 401:
                return answer
            with person.lock:
                if person.access == token:
                    refreshed = client.request("refresh", "POST", "/api/v1/auth/refresh", {"refresh": person.refresh})
                    if refreshed.status == 200:
                        person.access, person.refresh = refreshed.body["access"], refreshed.body["refresh"]
                    else:
                        self.login(client, person)
        return answer

    def approve_in_admin(self) -> None:
        """The staff reviewer logs in to the Django admin and runs its "approve selected" action."""
        client = Client(self.api_port, self.recorder)
        cookies: dict[str, str] = {}

        def page(method: str, path: str, form: dict | list | None = None):
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "Accept": "text/html"}
            answer = client.request("admin", method, path, headers=headers,
                                    form=urlencode(form, doseq=True).encode() if form is not None else None)
            for name, value in re.findall(r"(csrftoken|sessionid)=([^;]+)", answer.headers.get("set-cookie", "")):
                cookies[name] = value
            return answer

        def csrf(text: str) -> str:
            match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text)
            expect(match is not None, "admin page without a CSRF token")
            return match.group(1)

        login_page = page("GET", "/admin/login/?next=/admin/")
        answer = page("POST", "/admin/login/?next=/admin/", {
            "csrfmiddlewaretoken": csrf(login_page.body), "username": self.staff_email, "password": PASSWORD,
            "next": "/admin/"})
        expect(answer.status == 302 and "sessionid" in cookies, f"admin login: {answer.status}")
        ids = [p.kyc_id for p in self.people]
        for start in range(0, len(ids), 50):
            changelist = page("GET", "/admin/identity/kycsubmission/")
            answer = page("POST", "/admin/identity/kycsubmission/", [
                ("csrfmiddlewaretoken", csrf(changelist.body)), ("action", "approve_selected"), ("index", "0"),
                ("select_across", "0"), *[("_selected_action", i) for i in ids[start:start + 50]]])
            expect(answer.status == 302, f"admin approve action: {answer.status} {str(answer.body)[:300]}")
        pending = self.sql("SELECT COUNT(*) FROM outbox_outboxcommand WHERE command_type = 'CREATE_USER'")[0][0]
        expect(pending == len(ids), f"admin approved {pending} of {len(ids)} submissions")
        log(f"staff reviewer approved {len(ids)} KYC submissions in the admin")

    # -- transfers ------------------------------------------------------------------------------------
    def plan_transfers(self) -> list[list[dict]]:
        """Each client owns a set of senders (so one sender's requests go out one after the other)."""
        per_client: list[list[dict]] = [[] for _ in range(self.scale.clients)]
        for k in range(self.scale.transfers):
            sender = self.rng.choice(self.people)
            recipient = self.rng.choice([p for p in self.people if p is not sender])
            band = self.rng.random()
            if band < 0.05:
                amount, kind = 10_000 * GX, "overdraft"  # more than anyone holds: refused for funds
            elif band < 0.40:
                amount, kind = self.rng.randint(1, 3 * GX - 1), "free band"
            elif band < 0.45:
                amount, kind = self.rng.choice([3 * GX, 100 * GX]), "band edge"
            elif band < 0.90:
                amount, kind = self.rng.randint(3 * GX, 100 * GX), "5 bps band"
            else:
                amount, kind = self.rng.randint(100 * GX + 1, 140 * GX), "10 bps band"
            per_client[sender.index % self.scale.clients].append({
                "n": k, "sender": sender, "recipient": recipient, "amount": amount, "kind": kind,
                "replay": self.rng.random() < 0.10, "by_email": self.rng.random() < 0.2,
                "in_qirat": self.rng.random() < 0.5,
            })
        return per_client

    def transfer_phase(self) -> None:
        plans = self.plan_transfers()
        # One slot per fault plus one: the last fault falls before the held-back last tenth is released.
        duration = max(self.scale.slot_seconds * (len(self.faults) + 1), self.scale.transfers / 40)
        rate = self.scale.transfers / duration
        held_back = int(self.scale.transfers * 0.9) if self.faults else self.scale.transfers
        self.phase_started = time.time()
        self.phase_duration = duration
        log(f"transfer phase: {self.scale.transfers} transfers from {self.scale.clients} clients over at least "
            f"{duration:.0f}s; faults: {', '.join(self.faults) or 'none'}")
        injector = threading.Thread(target=self.inject_faults, name="faults", daemon=True)
        injector.start()
        errors: list[BaseException] = []

        def client_loop(plan: list[dict]) -> None:
            client = Client(self.api_port, self.recorder)
            try:
                for spec in plan:
                    release = self.phase_started + spec["n"] / rate
                    if spec["n"] >= held_back:
                        self.faults_done.wait()  # the last tenth goes out after the last fault recovered
                    time.sleep(max(0.0, release - time.time()))
                    self.one_transfer(client, spec)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client_loop, args=(plan,), daemon=True) for plan in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.load_done.set()
        injector.join(timeout=600)
        if errors:
            raise errors[0]
        log(f"transfer phase done in {time.time() - self.phase_started:.0f}s")

    def one_transfer(self, client: Client, spec: dict) -> None:
        sender, recipient, amount = spec["sender"], spec["recipient"], spec["amount"]
        body: dict = {"remark": f"acceptance {spec['n']}"}
        if spec["by_email"]:
            body["to_email"] = recipient.email
        else:
            body["to_user_id"] = recipient.id
        if spec["in_qirat"]:
            body["amount_qirat"] = str(amount)
        else:
            body["amount"] = str(Decimal(amount) / GX)
        key = uuid.uuid4().hex
        requested_at = time.time()
        answer = self.authed(client, sender, "transfer", "POST", "/api/v1/transfers", body,
                             headers={"Idempotency-Key": key})
        f = self.findings
        if answer.status == 409 and answer.body["error"]["code"] == "insufficient_funds":
            with f.lock:
                f.refused_for_funds += 1
        elif answer.status == 202:
            data = answer.body
            expected_fee = transfer_fee(amount, sender.nationality == recipient.nationality)
            if int(data["fee_qirat"]) != expected_fee or int(data["amount_qirat"]) != amount:
                with f.lock:
                    f.fee_mismatches.append(
                        f"{spec['kind']} {amount}: fee {data['fee_qirat']}, expected {expected_fee}")
            with f.lock:
                band = spec["kind"] if sender.nationality == recipient.nationality else "cross-border"
                f.accepted.append(Accepted(key, data["command_id"], sender.onchain_id, requested_at, amount, band))
            if spec["replay"]:
                again = self.authed(client, sender, "transfer", "POST", "/api/v1/transfers", body,
                                    headers={"Idempotency-Key": key})
                with f.lock:
                    f.replays += 1
                    if again.status != 202 or again.body.get("command_id") != data["command_id"]:
                        f.replay_mismatches.append(f"{key}: {again.status} {again.body}")
            if self.rng.random() < 0.3:
                self.read(client, sender, "command", f"/api/v1/commands/{data['command_id']}")
        else:
            f.add_unexpected(f"transfer {spec['kind']}: {answer.status} {answer.body}")
        if self.rng.random() < 0.5:
            self.read(client, sender, "wallet", f"/api/v1/users/{sender.id}/wallet")
        if self.rng.random() < 0.3:
            self.read(client, sender, "transactions", f"/api/v1/users/{sender.id}/transactions?limit=20")

    def read(self, client: Client, person: Person, endpoint: str, path: str) -> None:
        answer = self.authed(client, person, endpoint, "GET", path)
        with self.findings.lock:
            self.findings.reads += 1
        if answer.status != 200:
            self.findings.add_unexpected(f"GET {path}: {answer.status} {answer.body}")

    # -- faults ---------------------------------------------------------------------------------------
    def inject_faults(self) -> None:
        try:
            for i, name in enumerate(self.faults):
                moment = self.phase_started + (i + self.rng.uniform(0.1, 0.5)) * self.scale.slot_seconds
                time.sleep(max(0.5, moment - time.time()))
                if self.load_done.is_set():
                    self.fault_records.append(FaultRecord(name, time.time(), error="the load ended before it"))
                    continue
                record = FaultRecord(name, time.time())
                self.fault_records.append(record)
                log(f"fault {name} at +{record.started - self.phase_started:.1f}s")
                try:
                    getattr(self, f"fault_{name}")(record)
                    record.restored = time.time()
                    self.measure_recovery(record)
                except Exception as exc:
                    record.error = f"{type(exc).__name__}: {exc}"
                    log(f"fault {name} FAILED: {record.error}")
                else:
                    assert record.first_commit is not None and record.caught_up is not None
                    log(f"fault {name}: {record.detail}; first commit after "
                        f"{record.first_commit - record.started:.1f}s, caught up after "
                        f"{record.caught_up - record.started:.1f}s")
        finally:
            self.faults_done.set()

    def measure_recovery(self, record: FaultRecord) -> None:
        assert self.devnet is not None
        started = dt.datetime.fromtimestamp(record.started, dt.UTC)

        def committed_since() -> bool:
            rows = self.sql("SELECT MIN(committed_at) FROM outbox_outboxcommand WHERE committed_at > %s", (started,))
            if rows[0][0] is None:
                return False
            record.first_commit = rows[0][0].timestamp()
            return True

        self.wait_for(committed_since, 180, f"a commit after {record.name}", interval=0.1)
        height = self.devnet.height()
        record.caught_up = self.wait_for(lambda: self.caught_up_to(height), 180,
                                         f"the projection to reach block {height} after {record.name}", 0.1)

    def fault_submitter_kill(self, record: FaultRecord) -> None:
        name = self.rng.choice(["submitter1", "submitter2"])
        child = self.children[name]
        pid = child.pid
        child.kill9()
        time.sleep(1.0)  # the orchestrator notices and starts a new pod
        child.start()
        record.detail = f"kill -9 {name} (pid {pid}), restarted"

    def fault_projector_leader_kill(self, record: FaultRecord) -> None:
        # Right after another fault leadership may be changing hands: wait for one leader, then kill it.
        self.wait_for(lambda: sorted(self.roles().values()) == ["leader", "standby"], 60,
                      "one projector leading and one on standby")
        roles = self.roles()
        leader = next(name for name, role in roles.items() if role == "leader")
        standby = next(name for name in roles if name != leader)
        pid = self.children[leader].pid
        self.children[leader].kill9()
        took_over = self.wait_for(lambda: worker_role(self.projector_ports[standby]) == "leader", 60,
                                  f"{standby} to take over")
        self.children[leader].start()
        record.detail = (f"kill -9 leader {leader} (pid {pid}); {standby} took over after "
                         f"{took_over - record.started:.1f}s")

    def fault_devnet_restart(self, record: FaultRecord) -> None:
        assert self.devnet is not None
        height = self.devnet.height()
        self.devnet.kill9()
        time.sleep(1.0)
        self.devnet.start()
        record.detail = f"kill -9 devnet at height {height}, restarted on its ledger"

    def fault_postgres_restart(self, record: FaultRecord) -> None:
        assert self.pg is not None
        self.pg.restart_fast()
        record.detail = "pg_ctl stop -m fast, 1 s down, start"
        self.pg_window = (record.started, 0.0)
        up = self.wait_for(lambda: self.readyz and self.readyz[-1][0] > record.started and self.readyz[-1][1] == 200,
                           120, "/readyz to answer 200 after the PostgreSQL restart", interval=0.05)
        self.pg_window = (record.started, up)

    def fault_redis_restart(self, record: FaultRecord) -> None:
        assert self.redis is not None
        self.redis.stop()
        time.sleep(2.0)  # a Redis outage, not a blip
        self.redis.start()
        record.detail = "redis-server stopped for 2 s and started (its data is gone)"

    def fault_rolling_restart(self, record: FaultRecord) -> None:
        assert self.devnet is not None
        roles = self.roles()
        projectors = sorted(self.projector_ports, key=lambda name: roles[name] == "leader")  # standby first
        order = ["submitter1", "submitter2", *projectors, "api"]
        codes = []
        for name in order:
            code = self.children[name].terminate()
            codes.append(f"{name} {code}")
            if code != 0:
                raise RuntimeError(f"{name} exited {code} on SIGTERM")
            self.children[name].start()
        code = self.devnet.terminate()
        codes.append(f"devnet {code}")
        if code != 0:
            raise RuntimeError(f"devnet exited {code} on SIGTERM")
        self.devnet.start()
        record.detail = "SIGTERM and restart in turn, exit codes: " + ", ".join(codes)

    def poll_readyz(self) -> None:
        while not self.stop_polling.is_set():
            try:
                status, _ = http_get(f"http://127.0.0.1:{self.api_port}/readyz", timeout=3)
            except OSError:
                status = 0
            self.readyz.append((time.time(), status))
            self.stop_polling.wait(0.2)

    # -- after the load -------------------------------------------------------------------------------
    def drain(self) -> None:
        assert self.devnet is not None
        started = time.time()

        def drained() -> bool:
            unfinished = self.sql("SELECT COUNT(*) FROM outbox_outboxcommand WHERE status IN ('PENDING', 'SUBMITTED')")
            return unfinished[0][0] == 0 and self.caught_up_to(self.devnet.height())

        self.wait_for(drained, DRAIN_TIMEOUT, "the outbox to drain and the projection to catch up", interval=0.5)
        self.drain_seconds = time.time() - started
        log(f"drained and caught up {self.drain_seconds:.1f}s after the load")

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))

    def verify(self) -> None:
        assert self.devnet is not None
        f = self.findings
        commands = {str(row[0]): row for row in self.sql(
            "SELECT command_id, status, chaincode_code, tx_id, block_number, committed_at, aggregate_id, id, "
            "command_type, idempotency_key FROM outbox_outboxcommand")}
        # lost: every 202 has a command that is COMMITTED or FAILED with a chaincode code.
        lost = []
        for accepted in f.accepted:
            row = commands.get(accepted.command_id)
            if row is None or not (row[1] == "COMMITTED" or (row[1] == "FAILED" and row[2])):
                lost.append(f"{accepted.command_id}: {row[1:3] if row else 'no such command'}")
        self.lost = len(lost)
        self.check("lost = 0 (every 202 has a command COMMITTED or FAILED with a chaincode code)", not lost,
                   "; ".join(lost[:5]))
        # doubled: on the chain, in the outbox, in the read model.
        with contextlib.closing(self.devnet.ledger()) as ledger:
            events = ledger.execute("SELECT e.tx_id, e.name, e.payload, t.block, t.txnum FROM events e JOIN "
                                    "transactions t ON t.block = e.block AND t.txnum = e.txnum").fetchall()
            positions = {}
            for tx_id, block, txnum, code in ledger.execute("SELECT tx_id, block, txnum, code FROM transactions "
                                                           "ORDER BY block, txnum"):
                if code == 0:
                    positions.setdefault(tx_id, (block, txnum))
            chain_users = {key.removeprefix("user:"): json.loads(value) for key, value in ledger.execute(
                "SELECT key, value FROM state WHERE key LIKE 'user:%'")}
        applied = Counter()
        chain_fees = 0
        for _tx, name, payload, _b, _n in events:
            data = json.loads(payload)
            if name == "TransferWithFeesCompleted" and not data.get("replayed"):
                applied[data["idempotencyKey"]] += 1
                chain_fees += int(data["fee"])
        keys_per_command = Counter(accepted.command_id for accepted in f.accepted)
        command_per_key = defaultdict(set)
        for accepted in f.accepted:
            command_per_key[accepted.key].add(accepted.command_id)
        sent_rows = Counter(tx for (tx,) in self.sql("SELECT tx_id FROM projector_transaction WHERE kind = 'SENT'"))
        dup_rows = self.sql("SELECT tx_id, kind, wallet_id, COUNT(*) FROM projector_transaction "
                            "GROUP BY tx_id, kind, wallet_id HAVING COUNT(*) > 1")
        doubled = [f"chain applied key {k} {n} times" for k, n in applied.items() if n > 1]
        doubled += [f"key {k} has commands {sorted(c)}" for k, c in command_per_key.items() if len(c) > 1]
        doubled += [f"command {c} accepted for {n} keys" for c, n in keys_per_command.items() if n > 1]
        doubled += [f"tx {tx} has {n} SENT rows" for tx, n in sent_rows.items() if n > 1]
        doubled += [f"duplicate Transaction row {row}" for row in dup_rows]
        committed_transfers = [row for row in commands.values() if row[8] == "TRANSFER" and row[1] == "COMMITTED"]
        doubled += [f"committed transfer {row[0]} has no SENT row" for row in committed_transfers
                    if sent_rows.get(row[3], 0) != 1]
        if sum(applied.values()) != len(committed_transfers):
            doubled.append(f"chain applied {sum(applied.values())} transfers, outbox committed "
                           f"{len(committed_transfers)}")
        self.doubled = len(doubled)
        self.check("doubled = 0 (chain, outbox and read model: each transfer applied once)", not doubled,
                   "; ".join(doubled[:5]))
        # reconcile_balances: every wallet equals GetBalance on the chain.
        result = manage(self.env, "reconcile_balances")
        self.check("reconcile_balances exits 0", result.returncode == 0,
                   (result.stdout.strip().splitlines() or [""])[-1] + result.stderr.strip()[-300:])
        # supply: balances + fees = genesis total, in the read model and on the chain.
        active = self.sql("SELECT COUNT(*) FROM projector_wallet")[0][0]
        balances = self.sql("SELECT COALESCE(SUM(balance_qirat), 0) FROM projector_wallet")[0][0]
        fees = self.sql("SELECT COALESCE(SUM(fee_qirat), 0) FROM projector_transaction WHERE kind = 'SENT'")[0][0]
        genesis = active * GENESIS_AMOUNT
        chain_balances = sum(int(u["balance"]) for u in chain_users.values())
        self.check("supply conserved: read model balances + fees = genesis total",
                   balances + fees == genesis and active == len(self.people),
                   f"{balances} + {fees} vs {genesis} ({active} wallets)")
        self.check("supply conserved on the chain: balances + fees = genesis total",
                   chain_balances + chain_fees == len(chain_users) * GENESIS_AMOUNT,
                   f"{chain_balances} + {chain_fees} vs {len(chain_users) * GENESIS_AMOUNT}")
        # per-user order: each aggregate's commands commit in enqueue order.
        by_user: dict[str, list] = defaultdict(list)
        for row in commands.values():
            if row[1] == "COMMITTED":
                by_user[row[6]].append((row[7], positions.get(row[3])))
        disorder = []
        for user, rows in by_user.items():
            chain_order = [pos for _, pos in sorted(rows)]
            if None in chain_order or chain_order != sorted(chain_order):
                disorder.append(user)
        self.check("each user's commands committed in enqueue order", not disorder, ", ".join(disorder[:5]))
        # HTTP: no 5xx outside the PostgreSQL outage; inside it only 503 with the JSON error body.
        window = getattr(self, "pg_window", None)
        outside, inside_bad = [], []
        for s in self.recorder.samples:
            if s.status < 500:
                continue
            in_window = window is not None and window[0] - 1.0 <= s.started <= window[1] + 1.0
            if not in_window:
                outside.append(s)
            elif s.status != 503 or not s.json_error:
                inside_bad.append(s)
        self.check("no 5xx outside the PostgreSQL restart", not outside,
                   "; ".join(f"{s.endpoint} {s.status} at {s.started:.1f}" for s in outside[:5]))
        self.check("inside the PostgreSQL restart only 503 with the JSON error body", not inside_bad,
                   "; ".join(f"{s.endpoint} {s.status} json={s.json_error}" for s in inside_bad[:5]))
        if "postgres_restart" in self.faults and window is not None:
            during = [status for t, status in self.readyz if window[0] <= t <= window[1]]
            after = [status for t, status in self.readyz if t > window[1]]
            self.check("/readyz went 503 during the PostgreSQL outage and back to 200",
                       503 in during and bool(after) and after[-1] == 200,
                       f"during: {sorted(set(during))}, last after: {after[-1] if after else None}")
        # No process died on its own (a worker that cannot reconnect after a restart exits or hangs).
        dead = [name for name, child in self.children.items() if not child.alive()]
        self.check("every process still running (none died on its own)", not dead, ", ".join(dead))
        # The load itself.
        self.check("every requested fault injected", len(self.fault_records) == len(self.faults)
                   and all(not r.error for r in self.fault_records),
                   "; ".join(f"{r.name}: {r.error}" for r in self.fault_records if r.error))
        self.check("fees quoted as the fee bands say", not f.fee_mismatches, "; ".join(f.fee_mismatches[:5]))
        bands = Counter(a.band for a in f.accepted)
        missing = {"free band", "band edge", "5 bps band", "10 bps band", "cross-border"} - set(bands)
        self.check("every fee band and cross-border transfers accepted", not missing, ", ".join(sorted(missing)))
        self.check("a request sent again with its Idempotency-Key returns the same command",
                   not f.replay_mismatches, "; ".join(f.replay_mismatches[:5]))
        self.check("no unexpected answer", not f.unexpected, "; ".join(f.unexpected[:5]))
        self.check("some transfers refused for funds", f.refused_for_funds > 0, str(f.refused_for_funds))
        self.commands = commands

    def print_figures(self) -> None:
        f = self.findings
        block = BLOCK_MS / 1000
        commands = self.commands
        print(f"scale = {os.environ.get('ACCEPTANCE_SCALE', 'full')} ({self.scale.people} people, "
              f"{self.scale.transfers} transfers, {self.scale.clients} clients, seed {self.seed})")
        print(f"requests = {len(self.recorder.samples)} responses")
        print(f"requests retried after no answer = {self.recorder.connection_retries}")
        print(f"transfers accepted = {len(f.accepted)} (202)")
        print(f"transfers refused for funds = {f.refused_for_funds} (409)")
        bands = Counter(a.band for a in f.accepted)
        print("transfers accepted per fee band = " + ", ".join(f"{k} {n}" for k, n in sorted(bands.items())))
        print(f"transfers sent again with the same Idempotency-Key = {f.replays}")
        print(f"reads = {f.reads} (wallets, histories, command statuses)")
        print(f"commands = {len(commands)} ({Counter(r[1] for r in commands.values())})")
        failed = Counter(r[2] for r in commands.values() if r[1] == "FAILED")
        print(f"commands failed with a chaincode code = {sum(failed.values())} {dict(failed)}")
        events = self.sql("SELECT COUNT(*) FROM projector_transaction")[0][0]
        print(f"events projected = {events} transaction rows")
        print(f"faults injected = {sum(1 for r in self.fault_records if not r.error)} of {len(self.faults)}")
        print(f"lost = {self.lost}")
        print(f"doubled = {self.doubled}")
        by_endpoint: dict[str, list[float]] = defaultdict(list)
        for s in self.recorder.samples:
            if s.status < 500:
                by_endpoint[s.endpoint].append(s.seconds * 1000)
        for endpoint, values in sorted(by_endpoint.items()):
            print(f"latency {endpoint} p50 = {pct(values, 50):.0f} ms, p99 = {pct(values, 99):.0f} ms "
                  f"({len(values)} requests)")
        visible = {row[0]: row[1].timestamp() for row in self.sql(
            "SELECT block_number, applied_at FROM projector_projectedblock")}
        to_commit, to_visible = [], []
        for accepted in f.accepted:
            row = commands.get(accepted.command_id)
            if row is None or row[1] != "COMMITTED":
                continue
            to_commit.append((row[5].timestamp() - accepted.requested_at) / block)
            if row[4] in visible:
                to_visible.append((visible[row[4]] - accepted.requested_at) / block)
        print(f"request to committed p50 = {pct(to_commit, 50):.2f}, p99 = {pct(to_commit, 99):.2f} block intervals")
        print(f"request to visible in the read model p50 = {pct(to_visible, 50):.2f}, "
              f"p99 = {pct(to_visible, 99):.2f} block intervals")
        print(f"block interval = {BLOCK_MS} ms")
        for r in self.fault_records:
            at = r.started - self.phase_started
            if r.error:
                print(f"fault {r.name} at +{at:.1f} s = NOT INJECTED ({r.error})")
                continue
            print(f"fault {r.name} at +{at:.1f} s: recovery to first commit = {r.first_commit - r.started:.1f} s, "
                  f"to lag 0 = {r.caught_up - r.started:.1f} s ({r.detail})")
        if getattr(self, "pg_window", None):
            print(f"PostgreSQL outage as the API saw it = {self.pg_window[1] - self.pg_window[0]:.1f} s")
        print(f"drain after the load = {self.drain_seconds:.1f} s")
        for name, ok, detail in self.checks:
            print(f"check {name} = {'ok' if ok else 'FAILED'}{'' if ok or not detail else ': ' + detail}")


def pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def main() -> int:
    scale_name = os.environ.get("ACCEPTANCE_SCALE", "full")
    if scale_name not in SCALES:
        sys.exit(f"ACCEPTANCE_SCALE must be one of {', '.join(SCALES)}")
    raw = os.environ.get("ACCEPTANCE_FAULTS", ",".join(FAULTS)).strip()
    faults = [] if raw == "none" else [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in faults if name not in FAULTS]
    if unknown:
        sys.exit(f"unknown fault(s) {unknown}: ACCEPTANCE_FAULTS is a comma-separated list of {', '.join(FAULTS)} "
                 "or 'none'")
    seed = int(os.environ.get("ACCEPTANCE_SEED", str(random.SystemRandom().randrange(10**6))))
    run = Run(SCALES[scale_name], faults, seed)
    atexit.register(run.close)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(130))
    started = time.time()
    ok = False
    try:
        run.start_stack()
        poller = threading.Thread(target=run.poll_readyz, name="readyz", daemon=True)
        poller.start()
        run.onboard()
        run.transfer_phase()
        run.drain()
        run.verify()
        run.print_figures()
        ok = all(passed for _, passed, _ in run.checks)
    except (AssertionError, TimeoutError, GaveUp, RuntimeError, SystemExit, KeyboardInterrupt) as exc:
        # SystemExit: SIGTERM/SIGINT (the handler above); the services are stopped and the logs kept all the same.
        log(f"acceptance run aborted: {type(exc).__name__}: {exc}")
        for name, passed, detail in run.checks:
            print(f"check {name} = {'ok' if passed else 'FAILED'}{'' if passed else ': ' + detail}")
    finally:
        run.close()
    print(f"total time = {time.time() - started:.0f} s")
    if ok and not os.environ.get("ACCEPTANCE_KEEP"):
        shutil.rmtree(run.dir, ignore_errors=True)
    elif ok:
        print(f"logs = {run.dir}/logs")
    else:
        # The private PostgreSQL cluster is tens of MB: keep only the logs.
        for name in ("pg", "redis", "devnet", "var", "static", "prometheus"):
            shutil.rmtree(run.dir / name, ignore_errors=True)
    print("acceptance = ok" if ok else f"acceptance = FAILED (logs kept in {run.dir}/logs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
