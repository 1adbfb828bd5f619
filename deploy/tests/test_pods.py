"""The translation of rendered manifests into ``podman run`` (deploy/tests/pods.py) and its failure messages.

Runs in ``make test`` (no podman needed): the container test is only as good as this translation.
"""

from __future__ import annotations

import copy
import stat

import pytest

from deploy.tests import pods
from deploy.tests.conftest import UID, by_kind

SECRETS = {
    "backend-secrets": {k: b"x" for k in ("django-secret-key", "jwt-secret", "database-url", "redis-url")},
    "fabric-credentials": {k: b"pem" for k in ("cert.pem", "key.pem", "ca-cert.pem")},
}


def plan(mainnet, tmp_path, name="svc-identity", **changes):
    workload = copy.deepcopy(by_kind(mainnet, "Deployment")[name])
    configmaps = {n: cm.get("data", {}) for n, cm in by_kind(mainnet, "ConfigMap").items()}
    options = {"name": "c", "image": "img", "configmaps": configmaps, "secrets": SECRETS, "scratch": tmp_path,
               "ports": {3001: 40001, 9090: 40002, 9091: 40003}, "overrides": {"GUNICORN_BIND": "127.0.0.1:40001"}}
    options.update(changes)
    return workload, pods.plan_container(workload, **options)


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_the_api_container_gets_the_manifests_command_user_security_env_volumes_and_probes(mainnet, tmp_path):
    _, api = plan(mainnet, tmp_path)
    argv = api.argv
    assert argv[:3] == ["podman", "--runtime", "runc"] and "--network" in argv
    assert flag_values(argv, "--user") == [f"{UID}:{UID}"] and flag_values(argv, "--group-add") == [str(UID)]
    assert "--read-only" in argv and "--read-only-tmpfs=false" in argv  # podman's own writable /tmp, /run off
    assert "--cap-drop=ALL" in argv and flag_values(argv, "--security-opt") == ["no-new-privileges"]
    assert flag_values(argv, "--tmpfs") == [f"/tmp:rw,mode=1777,size={64 * 1024 * 1024}"]
    assert flag_values(argv, "--entrypoint") == ['["gunicorn", "-c", "deploy/gunicorn.conf.py"]']
    assert flag_values(argv, "--memory") == [str(1024**3)] and flag_values(argv, "--cpus") == ["2"]
    assert argv[-1] == "img"
    env = dict(e.split("=", 1) for e in flag_values(argv, "--env"))
    assert env["DATABASE_URL_FILE"] == "/etc/gx/secrets/database-url" and env["DEBUG"] == "false"
    assert env["ALLOWED_HOSTS"].startswith("api.gx.example")  # the overlay's patch of the ConfigMap
    assert env["GUNICORN_BIND"] == "127.0.0.1:40001"  # overrides come last
    [volume] = flag_values(argv, "--volume")
    source, target, mode = volume.split(":")
    assert (target, mode) == ("/etc/gx/secrets", "ro")
    database_url = tmp_path / "secret-backend-secrets" / "database-url"
    assert source == str(database_url.parent)
    info = database_url.stat()
    assert stat.S_IMODE(info.st_mode) == 0o440 and info.st_gid == UID  # defaultMode 0440, fsGroup
    assert [(p.kind, p.path, p.port) for p in api.probes] == [
        ("startup", "/health", 3001), ("liveness", "/livez", 3001), ("readiness", "/readyz", 3001)]
    assert api.grace_seconds == 40 and api.pre_stop == ["sleep", "5"] and api.ports == {3001: 40001}


def test_a_worker_mounts_the_fabric_credentials(mainnet, tmp_path):
    _, projector = plan(mainnet, tmp_path, name="projector", overrides={})
    targets = [v.split(":")[1] for v in flag_values(projector.argv, "--volume")]
    assert targets == ["/etc/gx/secrets", "/etc/fabric"]
    assert projector.probe("readiness").port == 9091 and projector.grace_seconds == 60


def test_an_unknown_configmap_reference_is_refused_by_name(mainnet, tmp_path):
    workload, _ = plan(mainnet, tmp_path)
    workload["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"] = "backend-confg"
    with pytest.raises(pods.Unsupported, match="backend-confg"):
        pods.plan_container(workload, name="c", image="i", configmaps={"backend-config": {}}, secrets=SECRETS,
                            scratch=tmp_path / "x", ports={}, overrides={})


@pytest.mark.parametrize(("change", "named"), [
    (lambda pod: pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}) or
     pod["containers"][0]["volumeMounts"].append({"name": "host", "mountPath": "/host"}), "hostPath"),
    (lambda pod: pod["containers"][0]["securityContext"].update(runAsUser=0), "runAsUser 0"),
    (lambda pod: pod["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}), "env X"),
    (lambda pod: pod["containers"][0]["securityContext"].update(privileged=True), "privileged"),
    (lambda pod: pod["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
     "Unconfined"),
])
def test_a_field_the_translation_does_not_run_is_refused_by_name(mainnet, tmp_path, change, named):
    workload, _ = plan(mainnet, tmp_path)
    pod = workload["spec"]["template"]["spec"]
    change(pod)
    with pytest.raises(pods.Unsupported, match=named):
        pods.plan_container(workload, name="c", image="i", configmaps={"backend-config": {}}, secrets=SECRETS,
                            scratch=tmp_path / "y", ports={}, overrides={})


@pytest.mark.parametrize(("log", "says"), [
    ('{"message": "configuration error: DATABASE_URL is required when DEBUG is off: postgres://..."}',
     "refused its configuration (a manifest env or secret): configuration error: DATABASE_URL is required"),
    ("OSError: [Errno 30] Read-only file system: '/app/var/gxbackend.sqlite3'",
     "wrote outside its writable paths (only /tmp is writable): Read-only file system: '/app/var/gxbackend"),
    ("Invalid HTTP_HOST header: '10.0.0.7:3001'. You may need to add '10.0.0.7' to ALLOWED_HOSTS.",
     "refused the request's Host header (ALLOWED_HOSTS): Invalid HTTP_HOST header: '10.0.0.7:3001'."),
    ("PermissionError: [Errno 13] Permission denied: '/etc/gx/secrets/jwt-secret'",
     "was denied a file it needs (user, group or mode): Permission denied: '/etc/gx/secrets/jwt-secret'"),
])
def test_a_failure_is_explained_by_the_first_known_cause_in_the_log(log, says):
    message = pods.explain("api-0", f"starting\n{log}\nmore", "starting")
    assert message.startswith(f"api-0 {says}")


def test_an_unknown_failure_quotes_the_last_log_lines():
    message = pods.explain("api-0", "\n".join(f"line {i}" for i in range(40)), "stopping (exit 1)")
    assert message.startswith("api-0 failed while stopping (exit 1)") and message.endswith("line 39")
    assert "line 24" not in message


def test_quantities():
    assert pods.quantity_bytes("64Mi") == 64 * 1024 * 1024 and pods.quantity_bytes("1G") == 10**9
    assert pods.cpu_cores("250m") == "0.25" and pods.cpu_cores("2") == "2"
    with pytest.raises(pods.Unsupported):
        pods.quantity_bytes("1.5Gi")
