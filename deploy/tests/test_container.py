"""The deployable artefact itself: the image built from deploy/docker/Dockerfile runs what the mainnet overlay
renders (migration Job, svc-identity, 2 submitters, 2 projectors) with podman, against this machine's
PostgreSQL and Redis and a devnet peer (TLS), and a person goes from registration to a committed transfer.

Run by ``make container-test`` (``.ci/run`` calls it after ``make test``; deselected from ``make test``). Needs
root, podman, runc and debootstrap (``.ci/run`` installs them). The base image is the stand-in of
deploy/docker/standin-base.sh (Docker Hub cannot be reached here) and the dependencies come from a wheelhouse
downloaded on this machine, so the build itself needs no network; both are cached under ``var/container/``.
How each manifest becomes a ``podman run`` is deploy/tests/pods.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from deploy.tests import pods
from deploy.tests.conftest import DEPLOY, MAINNET, ROOT, UID, by_kind, kustomize_build
from gxbackend.testing import create_scratch_database, drop_scratch_database, http_get, unused_listen_port

pytestmark = [pytest.mark.container, pytest.mark.slow]

CACHE = ROOT / "var" / "container"
WHEELHOUSE = DEPLOY / "docker" / "wheelhouse"
STANDIN_BASE = "localhost/gxbackend-base:python3.11-bookworm"
IMAGE = "localhost/gxbackend:container-test"
API_HOST = "svc-identity"  # a name in the mainnet ALLOWED_HOSTS: the in-cluster Service
# Which setting moves each container port when every replica shares the host's network (see pods.py).
PORT_SETTINGS = {3001: "GUNICORN_BIND", 9090: "SUBMITTER_METRICS_PORT", 9091: "PROJECTOR_METRICS_PORT"}
# Writable in every container whatever the manifest says: the runtime's shared-memory and message-queue mounts.
RUNTIME_WRITABLE = ("/dev/shm", "/dev/mqueue")


def say(text: str) -> None:
    """A line for the CI log (the make target runs pytest with -s)."""
    sys.stdout.write(f"[container-test] {text}\n")
    sys.stdout.flush()


def run(argv: list[str], *, timeout: float, what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT,
                            env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        pytest.fail(f"{what} failed ({result.returncode}):\n{tail}")
    return result.stdout


# ---- the image ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image() -> str:
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: apt-get install podman runc debootstrap (.ci/run does)")
    started = time.monotonic()
    run([str(DEPLOY / "docker" / "standin-base.sh"), STANDIN_BASE, str(CACHE)], timeout=900,
        what="the stand-in base image (debootstrap)")
    wheels = CACHE / "wheelhouse"
    run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--require-hashes",
         "--only-binary", ":all:", "--dest", str(wheels), "-r", str(ROOT / "requirements.lock")],
        timeout=600, what="downloading the wheelhouse of requirements.lock")
    copied = []
    for wheel in wheels.glob("*.whl"):
        target = WHEELHOUSE / wheel.name
        shutil.copy2(wheel, target)
        copied.append(target)
    try:
        run([*pods.PODMAN, "build", *pods.ULIMITS, "--pull=never", "--build-arg", f"BASE_IMAGE={STANDIN_BASE}",
             "--file", str(DEPLOY / "docker" / "Dockerfile"), "--tag", IMAGE, str(ROOT)],
            timeout=900, what="podman build -f deploy/docker/Dockerfile")
    finally:
        for target in copied:
            target.unlink(missing_ok=True)
    size = int(pods.podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    say(f"image {IMAGE} built in {time.monotonic() - started:.0f} s")
    say(f"image size = {size / 1e6:.0f} MB")
    return IMAGE


def test_the_image_runs_as_10001_by_default(image):
    user = pods.podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == f"{UID}:{UID}"


# ---- the stack ------------------------------------------------------------------------------------------------
class Stack:
    """The rendered mainnet workloads running in podman, with their plans and the devnet they talk to."""

    def __init__(self, scratch: Path, image: str, database_url: str, redis_url: str, devnet: Any,
                 label: str) -> None:
        self.scratch, self.image, self.label = scratch, image, label
        # Containers carry the database's name: a later run against it removes what a killed run left.
        self.database = urllib.parse.urlsplit(database_url).path.lstrip("/")
        self.rendered = kustomize_build(MAINNET)
        self.configmaps = {name: cm.get("data", {}) for name, cm in by_kind(self.rendered, "ConfigMap").items()}
        self.workloads = {**by_kind(self.rendered, "Deployment"), **by_kind(self.rendered, "Job")}
        fabric = devnet.env
        self.secrets = {
            "backend-secrets": {
                "django-secret-key": secrets.token_urlsafe(64).encode(),
                "jwt-secret": secrets.token_urlsafe(48).encode(),
                "database-url": database_url.encode(),
                "redis-url": redis_url.encode(),
            },
            "fabric-credentials": {
                "cert.pem": Path(fabric["FABRIC_CERT_PATH"]).read_bytes(),
                "key.pem": Path(fabric["FABRIC_KEY_PATH"]).read_bytes(),
                "ca-cert.pem": Path(fabric["FABRIC_TLS_CA_PATH"]).read_bytes(),
            },
        }
        # Where this machine differs from the cluster (printed): the peer's address and TLS name, loopback
        # binds, and a cache prefix of this run's own in the shared Redis.
        self.common = {
            "FABRIC_PEER_ENDPOINT": fabric["FABRIC_PEER_ENDPOINT"],
            "FABRIC_TLS_SERVER_NAME": "peer0.org1.example.com",
            "WORKER_METRICS_HOST": "127.0.0.1",
            "CACHE_KEY_PREFIX": f"gxct{label}",
        }
        self.plans: dict[str, pods.ContainerPlan] = {}
        self.ports_taken: set[int] = set()

    def plan(self, workload: str, replica: int) -> pods.ContainerPlan:
        manifest = self.workloads[workload]
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        # Every container shares the host's network: each needs host ports of its own.
        ports = {p["containerPort"]: unused_listen_port(self.ports_taken) for p in container.get("ports", [])}
        overrides = dict(self.common)
        for container_port, host_port in ports.items():
            setting = PORT_SETTINGS[container_port]
            overrides[setting] = f"127.0.0.1:{host_port}" if setting == "GUNICORN_BIND" else str(host_port)
        name = f"gxct-{self.label}-{workload}-{replica}"
        plan = pods.plan_container(manifest, name=name, image=self.image, configmaps=self.configmaps,
                                   secrets=self.secrets, scratch=self.scratch / workload, ports=ports,
                                   overrides=overrides, label=self.database)
        self.plans[name] = plan
        return plan

    def start(self, plan: pods.ContainerPlan) -> None:
        pods.podman(*plan.argv[len(pods.PODMAN):], timeout=120)

    def by_workload(self, workload: str) -> list[pods.ContainerPlan]:
        return [p for n, p in self.plans.items() if n.startswith(f"gxct-{self.label}-{workload}-")]

    def api(self) -> Api:
        plan = self.by_workload("svc-identity")[0]
        return Api(f"http://127.0.0.1:{plan.ports[3001]}")


@pytest.fixture(scope="module")
def stack(image, tmp_path_factory):
    from fabric_client.devnet.process import DevnetProcess

    started = time.monotonic()
    label = uuid.uuid4().hex[:8]
    database_url = create_scratch_database("container")
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    scratch = tmp_path_factory.mktemp("pods")
    devnet = DevnetProcess(scratch / "devnet", block_timeout_ms=100, extra_args=("--tls",)).start()
    stack = Stack(scratch, image, database_url, redis_url, devnet, label)
    pods.remove_labelled(stack.database)
    say(f"rendered {MAINNET.relative_to(ROOT)}: {len(stack.rendered)} objects; this machine's values: "
        f"{stack.common}, database {stack.database}")
    try:
        migrate = stack.plan("gxbackend-migrate", 0)
        stack.start(migrate)
        deadline = time.monotonic() + int(stack.workloads["gxbackend-migrate"]["spec"].get(
            "activeDeadlineSeconds", 900))
        while pods.state(migrate.name)[0] == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
        status, code = pods.state(migrate.name)
        assert (status, code) == ("exited", 0), pods.explain(migrate.name, pods.logs(migrate.name),
                                                             f"running the migration Job ({status}, {code})")
        plans = [stack.plan("svc-identity", 0), *(stack.plan("outbox-submitter", i) for i in range(2)),
                 *(stack.plan("projector", i) for i in range(2))]
        for plan in plans:
            stack.start(plan)
        for plan in plans:
            pods.wait_started(plan)
        for plan in plans:  # a probe proves little once its container is gone (e.g. its port was in use)
            status, code = pods.state(plan.name)
            assert status == "running", pods.explain(plan.name, pods.logs(plan.name), f"starting ({status}, {code})")
        say(f"migration Job done and 5 containers started in {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        for name in stack.plans:
            pods.podman("rm", "--force", "--time", "0", name, check=False)
        devnet.terminate()
        drop_scratch_database(database_url)
        _forget_cache_keys(redis_url, stack.common["CACHE_KEY_PREFIX"])


def _forget_cache_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        client.delete(key)


# ---- the API as a client and an operator use it ---------------------------------------------------------------
class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None,
             form: dict | None = None, expect: int | None = None) -> tuple[int, Any]:
        headers = {"Host": API_HOST, "Accept": "application/json"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with _NO_REDIRECTS.open(request, timeout=30) as response:
                status, raw, received = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, raw, received = exc.code, exc.read(), exc.headers
        for cookie in received.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        try:
            payload: Any = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        if expect is not None:
            assert status == expect, f"{method} {path}: {status} {str(payload)[:500]}"
        return status, payload

    def admin_login(self, email: str, password: str) -> None:
        _, page = self.call("GET", "/admin/login/")
        self.call("POST", "/admin/login/?next=/admin/", form={
            "csrfmiddlewaretoken": _csrf(page), "username": email, "password": password, "next": "/admin/"},
            expect=302)

    def admin_action(self, changelist: str, action: str, selected: list[str]) -> str:
        """Runs a list action; returns the text of the messages the admin shows after it."""
        _, page = self.call("GET", changelist, expect=200)
        self.call("POST", changelist, form={"csrfmiddlewaretoken": _csrf(page), "action": action,
                                            "_selected_action": selected, "index": "0"}, expect=302)
        _, page = self.call("GET", changelist, expect=200)
        messages = re.search(r'<ul class="messagelist">(.*?)</ul>', page, re.DOTALL)
        items = re.findall(r"<li[^>]*>(.*?)</li>", messages.group(1), re.DOTALL) if messages else []
        return " | ".join(re.sub(r"<[^>]+>", "", item).strip() for item in items)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the admin's 302s are checked, not followed


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, f"no CSRF token on the admin page: {page[:300]}"
    return match.group(1)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def wait_for(what: str, check, timeout: float = 60.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


def metric(plan: pods.ContainerPlan, container_port: int, name: str) -> float | None:
    status, body = http_get(f"http://127.0.0.1:{plan.ports[container_port]}/metrics")
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body.decode(), re.MULTILINE)
    return float(match.group(1)) if status == 200 and match else None


# ---- checks -------------------------------------------------------------------------------------------------
def test_every_probe_of_every_container_answers_as_its_manifest_expects(stack):
    failures = []
    for plan in stack.plans.values():
        if not plan.probes:
            continue
        for probe in plan.probes:
            ok, detail = pods.probe_once(plan, probe)
            if not ok:
                failures.append(f"{plan.name} {probe.kind}Probe {detail}")
    assert not failures, "\n".join(failures)
    say("probes: " + ", ".join(sorted({f"{p.kind}:{p.path}" for plan in stack.plans.values() for p in plan.probes})))


def test_each_process_runs_as_10001_and_can_write_nowhere_but_tmp(stack):
    for plan in stack.plans.values():
        if pods.state(plan.name)[0] != "running":
            continue
        status = pods.podman("exec", plan.name, "cat", "/proc/1/status").stdout
        uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1)
        gid = re.search(r"^Gid:\s+(\d+)", status, re.MULTILINE).group(1)
        assert (int(uid), int(gid)) == (UID, UID), f"{plan.name} runs as {uid}:{gid}"
        found = pods.podman("exec", plan.name, "python", "-c", WRITABLE_PATHS, timeout=300).stdout
        writable = [p for p in json.loads(found) if not p.startswith(RUNTIME_WRITABLE)]
        outside = [p for p in writable if p != "/tmp" and not p.startswith("/tmp/")]
        assert not outside, f"{plan.name} can write outside /tmp: {outside[:20]}"
        assert "/tmp" in writable, f"{plan.name}: /tmp is not writable"


# Run inside a container as its user: every directory it can create a file in, and every regular file it
# may write (character devices such as /dev/null are not storage). /proc and /sys are the kernel's.
WRITABLE_PATHS = r"""
import json, os, stat, tempfile
found = []
for top, dirs, files in os.walk("/", topdown=True):
    if top in ("/proc", "/sys"):
        dirs[:] = []
        continue
    if os.access(top, os.W_OK | os.X_OK):
        try:
            tempfile.TemporaryFile(dir=top).close()
            found.append(top)
        except OSError:
            pass
    for name in files:
        path = os.path.join(top, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode) and os.access(path, os.W_OK):
                open(path, "ab").close()
                found.append(path)
        except OSError:
            pass
print(json.dumps(found))
"""


def test_a_person_registers_is_approved_becomes_active_and_transfers_through_the_container_api(stack):
    api = stack.api()
    suffix = stack.label
    people = {}
    for who, nationality in (("sender", "NG"), ("recipient", "NG")):
        email = f"{who}-{suffix}@example.com"
        _, profile = api.call("POST", "/api/v1/users", {
            "email": email, "password": PASSWORD, "first_name": who.title(), "last_name": "Container",
            "date_of_birth": "1990-05-17", "nationality": nationality}, expect=201)
        assert profile["status"] == "REGISTERED"
        _, tokens = api.call("POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD}, expect=200)
        _, kyc = api.call("POST", f"/api/v1/users/{profile['id']}/kyc", {
            "document_type": "PASSPORT", "document_number": f"C{suffix}{who[:3]}", "issuing_country": "NG",
            "expiry_date": "2040-01-01", "document_sha256": sha(f"document {who} {suffix}"),
            "biometric_hash": sha(f"biometric {who} {suffix}"),
        }, token=tokens["access"], expect=202)
        people[who] = {"profile": profile, "token": tokens["access"], "kyc": kyc["id"], "email": email}

    # A reviewer approves both in the admin, over HTTP, as staff do (the account made with manage.py).
    reviewer = f"reviewer-{suffix}@example.com"
    api_plan = stack.by_workload("svc-identity")[0]
    pods.podman("exec", "--env", f"DJANGO_SUPERUSER_PASSWORD={PASSWORD}", api_plan.name, "python", "manage.py",
                "createsuperuser", "--noinput", "--email", reviewer, timeout=120)
    admin = stack.api()
    admin.admin_login(reviewer, PASSWORD)
    said = admin.admin_action("/admin/identity/kycsubmission/", "approve_selected",
                              [people["sender"]["kyc"], people["recipient"]["kyc"]])
    assert "Approved 2 submission(s)" in said, f"the admin said: {said}"

    for who, person in people.items():
        def active(person=person):
            _, me = api.call("GET", "/api/v1/users/me", token=person["token"], expect=200)
            return me["status"] == "ACTIVE"
        wait_for(f"{who} to become ACTIVE (approve → CREATE_USER → chain → projector)", active, timeout=90)
    sender = people["sender"]
    _, wallet = api.call("GET", f"/api/v1/users/{sender['profile']['id']}/wallet", token=sender["token"],
                         expect=200)
    assert wallet["balance"] == "500.000000", wallet

    _, transfer = api.call("POST", "/api/v1/transfers", {"to_email": people["recipient"]["email"],
                                                          "amount": "10"}, token=sender["token"], expect=202)

    def committed():
        _, command = api.call("GET", transfer["status_url"],
                              token=sender["token"], expect=200)
        assert command["status"] != "FAILED", command
        return command if command["status"] == "COMMITTED" else None
    command = wait_for("the transfer to be COMMITTED", committed, timeout=90)
    assert command["tx_id"]

    def credited():
        recipient = people["recipient"]
        _, wallet = api.call("GET", f"/api/v1/users/{recipient['profile']['id']}/wallet",
                             token=recipient["token"], expect=200)
        return wallet["balance"] == "510.000000"
    wait_for("the recipient's projected balance of 510 GX", credited, timeout=60)
    stack.people = people


def test_the_standby_projector_takes_over_when_the_leader_container_stops(stack):
    projectors = stack.by_workload("projector")
    leaders = wait_for("one projector to lead", lambda: [
        p for p in projectors if metric(p, 9091, "projector_is_leader") == 1.0] or None, timeout=30)
    assert len(leaders) == 1, [p.name for p in leaders]
    leader = leaders[0]
    standby = next(p for p in projectors if p is not leader)
    assert metric(standby, 9091, "projector_is_leader") == 0.0
    elapsed, code = pods.stop(leader)
    say(f"{leader.name} (leader) stopped in {elapsed:.1f} s (grace {leader.grace_seconds} s), exit {code}")
    assert code == 0 and elapsed <= leader.grace_seconds, pods.explain(leader.name, pods.logs(leader.name),
                                                                     f"stopping (exit {code}, {elapsed:.1f} s)")
    wait_for(f"{standby.name} to take over", lambda: metric(standby, 9091, "projector_is_leader") == 1.0,
             timeout=60)
    assert pods.probe_once(standby, standby.probe("readiness"))[0]

    # The new leader projects: the recipient's payment back arrives in the sender's wallet.
    people = getattr(stack, "people", None)
    if people is None:
        pytest.skip("the transfer test did not run")
    api = stack.api()
    sender, recipient = people["sender"], people["recipient"]

    def sender_balance() -> int:
        _, wallet = api.call("GET", f"/api/v1/users/{sender['profile']['id']}/wallet", token=sender["token"],
                             expect=200)
        return int(wallet["balance_qirat"])
    before = sender_balance()
    api.call("POST", "/api/v1/transfers", {"to_email": sender["email"], "amount": "1"}, token=recipient["token"],
             expect=202)
    wait_for("the new leader to project a payment made after the takeover",
             lambda: sender_balance() == before + 1_000_000, timeout=60)


def test_every_container_stops_with_exit_0_within_its_termination_grace_period(stack):
    report = []
    for plan in stack.plans.values():
        if pods.state(plan.name)[0] != "running":
            continue
        elapsed, code = pods.stop(plan)
        report.append(f"{plan.name} {elapsed:.1f}/{plan.grace_seconds} s exit {code}")
        assert code == 0, pods.explain(plan.name, pods.logs(plan.name), f"stopping (exit {code})")
        assert elapsed <= plan.grace_seconds, f"{plan.name} took {elapsed:.1f} s, grace {plan.grace_seconds} s"
    say("stopped: " + "; ".join(report))


PASSWORD = "correct-horse-battery-9"
