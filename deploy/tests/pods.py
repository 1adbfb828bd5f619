"""Runs rendered Kubernetes workloads with podman, the way a kubelet would run their pods.

Every flag is derived by code from the rendered manifest, never from a second hand-written copy: the command
and args, the environment (``envFrom`` ConfigMaps and ``env``), the pod and container ``securityContext``
(user, group, fsGroup, read-only root, no-new-privileges, dropped capabilities, seccomp), the volumes
(``secret`` as read-only files with the manifest's modes, ``emptyDir`` as a tmpfs of its size limit), the
resource limits, the probes and ``terminationGracePeriodSeconds``. A field this translation does not know
raises :class:`Unsupported` naming it, so a manifest cannot silently mean more than what is tested.

What differs from a cluster, and why (the ``overrides`` of :func:`plan_container`, printed by the test):
every container shares the host's network namespace (``--network host``: PostgreSQL, Redis and devnet listen
on this machine's loopback), so each replica is given its own free port where the cluster gives each pod
its own IP, and the addresses of the outside services are those of this machine.

podman here: ``--runtime runc`` (crun refuses this kernel's hybrid cgroup layout) and lowered ulimits (the
defaults exceed what the kernel grants inside this sandbox).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gxbackend.testing import http_get

PODMAN = ["podman", "--runtime", "runc"]
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
LABEL = "gx.container-test"
_QUANTITY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3, "": 1}


class Unsupported(Exception):
    """The manifest uses a field this translation does not run (so the test would not be testing it)."""


def quantity_bytes(value: str | int) -> int:
    """A Kubernetes memory quantity (``64Mi``, ``1Gi``, ``512M``, ``1000``) in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G|)", str(value))
    if not match:
        raise Unsupported(f"quantity {value!r}")
    return int(match.group(1)) * _QUANTITY[match.group(2)]


def cpu_cores(value: str | int) -> str:
    text = str(value)
    return str(int(text[:-1]) / 1000) if text.endswith("m") else text


@dataclass
class Probe:
    kind: str  # startup, liveness, readiness
    path: str
    port: int  # the container port the probe targets (a named port resolved)
    period: float
    failure_threshold: int
    timeout: float


@dataclass
class ContainerPlan:
    name: str
    argv: list[str]  # podman run ... (detached)
    probes: list[Probe]
    grace_seconds: int
    pre_stop: list[str] | None
    ports: dict[int, int]  # container port -> port on this machine
    user: tuple[int, int]
    env: dict[str, str] = field(default_factory=dict)

    def probe(self, kind: str) -> Probe:
        return next(p for p in self.probes if p.kind == kind)


def _security(pod: dict[str, Any], container: dict[str, Any]) -> tuple[list[str], tuple[int, int]]:
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    known_pod = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}
    known = {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsNonRoot", "runAsUser", "runAsGroup",
             "capabilities", "seccompProfile"}
    for name in set(pod_sc) - known_pod:
        raise Unsupported(f"pod securityContext.{name}")
    for name in set(sc) - known:
        raise Unsupported(f"securityContext.{name}")
    merged = {**pod_sc, **sc}
    if "runAsUser" not in merged:
        raise Unsupported("securityContext without runAsUser (the image's user would be used)")
    user = (int(merged["runAsUser"]), int(merged.get("runAsGroup", merged["runAsUser"])))
    if merged.get("runAsNonRoot") and user[0] == 0:
        raise Unsupported("runAsNonRoot with runAsUser 0: a kubelet refuses to start this container")
    flags = ["--user", f"{user[0]}:{user[1]}"]
    if "fsGroup" in pod_sc:
        flags += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        # Without --read-only-tmpfs=false podman would add writable /tmp, /run and /var/tmp of its own.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if sc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    capabilities = sc.get("capabilities", {})
    flags += [f"--cap-drop={c}" for c in capabilities.get("drop", [])]
    flags += [f"--cap-add={c}" for c in capabilities.get("add", [])]
    seccomp = merged.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if seccomp != "RuntimeDefault":  # podman's default profile is the runtime default
        raise Unsupported(f"seccompProfile {seccomp}")
    return flags, user


def _environment(container: dict[str, Any], configmaps: dict[str, dict[str, str]],
                 overrides: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if set(source) - {"configMapRef", "prefix"}:
            raise Unsupported(f"envFrom {sorted(source)}")
        ref = source["configMapRef"]["name"]
        if ref not in configmaps:
            raise Unsupported(f"envFrom configMapRef {ref!r}: no such ConfigMap in the rendered manifests")
        env.update({source.get("prefix", "") + k: v for k, v in configmaps[ref].items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = configmaps[ref["name"]][ref["key"]]
        else:
            raise Unsupported(f"env {item['name']}: valueFrom {sorted(item.get('valueFrom', {}))}")
    env.update(overrides)
    return env


def _volumes(pod: dict[str, Any], container: dict[str, Any], secrets: dict[str, dict[str, bytes]],
             scratch: Path) -> list[str]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    flags: list[str] = []
    for mount in container.get("volumeMounts", []):
        if set(mount) - {"name", "mountPath", "readOnly"}:
            raise Unsupported(f"volumeMount {sorted(mount)}")
        volume = volumes[mount["name"]]
        path = mount["mountPath"]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            options = "rw,mode=1777" + (f",size={quantity_bytes(size)}" if size else "")
            flags += ["--tmpfs", f"{path}:{options}"]
        elif "secret" in volume:
            flags += ["--volume", f"{_secret_dir(volume, secrets, scratch, fs_group)}:{path}:ro"]
        else:
            raise Unsupported(f"volume {mount['name']}: {sorted(set(volume) - {'name'})}")
    return flags


def _secret_dir(volume: dict[str, Any], secrets: dict[str, dict[str, bytes]], scratch: Path,
                fs_group: int | None) -> Path:
    """The Secret's items as files, owned and moded as a kubelet writes them (``defaultMode``, ``fsGroup``)."""
    spec = volume["secret"]
    name = spec["secretName"]
    if name not in secrets:
        raise Unsupported(f"secret {name!r} is not provided to the test")
    directory = scratch / f"secret-{volume['name']}"
    if directory.exists():
        return directory
    directory.mkdir(parents=True)
    items = spec.get("items") or [{"key": k, "path": k} for k in secrets[name]]
    mode = spec.get("defaultMode", 0o644)
    for item in items:
        if item["key"] not in secrets[name]:
            raise Unsupported(f"secret {name!r} has no key {item['key']!r}")
        target = directory / item["path"]
        target.write_bytes(secrets[name][item["key"]])
        os.chmod(target, item.get("mode", mode))
        if fs_group is not None:
            os.chown(target, 0, fs_group)
    os.chmod(directory, 0o750 if fs_group is not None else 0o755)
    if fs_group is not None:
        os.chown(directory, 0, fs_group)
    return directory


def _probes(container: dict[str, Any]) -> list[Probe]:
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    probes = []
    for kind in ("startup", "liveness", "readiness"):
        spec = container.get(f"{kind}Probe")
        if spec is None:
            continue
        if "httpGet" not in spec:
            raise Unsupported(f"{kind}Probe without httpGet")
        http = spec["httpGet"]
        if http.get("scheme", "HTTP") != "HTTP" or http.get("httpHeaders"):
            raise Unsupported(f"{kind}Probe httpGet {sorted(http)}")
        port = http["port"]
        probes.append(Probe(kind, http["path"], named[port] if isinstance(port, str) else int(port),
                            float(spec.get("periodSeconds", 10)), int(spec.get("failureThreshold", 3)),
                            float(spec.get("timeoutSeconds", 1))))
    return probes


def plan_container(workload: dict[str, Any], *, name: str, image: str, configmaps: dict[str, dict[str, str]],
                   secrets: dict[str, dict[str, bytes]], scratch: Path, ports: dict[int, int],
                   overrides: dict[str, str], label: str = "1") -> ContainerPlan:
    """The ``podman run`` of the first container of ``workload`` (a Deployment, Job or CronJob)."""
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    if pod.get("initContainers") or len(pod["containers"]) != 1:
        raise Unsupported("pods with init or several containers")
    security, user = _security(pod, container)
    env = _environment(container, configmaps, overrides)
    argv = [*PODMAN, "run", "--detach", "--name", name, "--hostname", name, "--label", f"{LABEL}={label}",
            "--pull", "never", "--network", "host", *ULIMITS, *security,
            *_volumes(pod, container, secrets, scratch)]
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        argv += ["--memory", str(quantity_bytes(limits["memory"]))]
    if "cpu" in limits:
        argv += ["--cpus", cpu_cores(limits["cpu"])]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if "workingDir" in container:
        argv += ["--workdir", container["workingDir"]]
    if "command" in container:
        argv += ["--entrypoint", json.dumps(container["command"])]
    argv += [image, *container.get("args", [])]
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if pre_stop and "exec" not in pre_stop:
        raise Unsupported(f"preStop {sorted(pre_stop)}")
    return ContainerPlan(
        name=name, argv=argv, probes=_probes(container),
        grace_seconds=int(pod.get("terminationGracePeriodSeconds", 30)),
        pre_stop=pre_stop["exec"]["command"] if pre_stop else None,
        ports={p["containerPort"]: ports.get(p["containerPort"], p["containerPort"])
               for p in container.get("ports", [])},
        user=user, env=env,
    )


# ---- running and diagnosing -------------------------------------------------------------------------------
def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def logs(name: str, tail: int = 60) -> str:
    result = podman("logs", "--tail", str(tail), name, check=False)
    return (result.stdout + result.stderr).strip()


def state(name: str) -> tuple[str, int]:
    """(status, exit code) of a container: ``running``, ``exited``..."""
    out = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.split()
    return out[0], int(out[1])


_CAUSES = (
    (re.compile(r"Invalid HTTP_HOST header[^\n]*?\.(?= )"), "refused the request's Host header (ALLOWED_HOSTS)"),
    (re.compile(r"Read-only file system[^\n]*"), "wrote outside its writable paths (only /tmp is writable)"),
    (re.compile(r"configuration error:[^\n]*"), "refused its configuration (a manifest env or secret)"),
    (re.compile(r"ImproperlyConfigured:[^\n]*"), "refused its configuration (a manifest env or secret)"),
    (re.compile(r"Permission denied[^\n]*"), "was denied a file it needs (user, group or mode)"),
    (re.compile(r"(?:ModuleNotFoundError|ImportError):[^\n]*"), "misses code in the image"),
)


def explain(name: str, log: str, what: str) -> str:
    """One message naming why container ``name`` failed at ``what``: the first known cause in its log, quoted."""
    for pattern, meaning in _CAUSES:
        match = pattern.search(log)
        if match:
            return f"{name} {meaning}: {match.group(0).strip()} (while {what})"
    last = "\n".join(log.splitlines()[-15:])
    return f"{name} failed while {what}; last log lines:\n{last}"


def probe_once(plan: ContainerPlan, probe: Probe) -> tuple[bool, str]:
    """A kubelet's httpGet: success is a status from 200 to 399 within ``timeoutSeconds``."""
    url = f"http://127.0.0.1:{plan.ports[probe.port]}{probe.path}"
    try:
        status, body = http_get(url, timeout=probe.timeout)
    except OSError as exc:
        return False, f"{url}: {exc}"
    return 200 <= status < 400, f"{url}: {status} {body[:200]!r}"


def wait_started(plan: ContainerPlan) -> None:
    """Polls the startup probe until it succeeds within ``periodSeconds × failureThreshold`` (as the kubelet
    allows), then requires liveness and readiness to succeed too; any failure names its cause."""
    probe = plan.probe("startup")
    deadline = time.monotonic() + probe.period * probe.failure_threshold
    last = ""
    while time.monotonic() < deadline:
        status, code = state(plan.name)
        if status != "running":
            raise AssertionError(explain(plan.name, logs(plan.name), f"starting (exited with {code})"))
        ok, last = probe_once(plan, probe)
        if ok:
            return
        time.sleep(0.5)
    raise AssertionError(explain(plan.name, logs(plan.name), f"waiting for its startup probe ({last})"))


def stop(plan: ContainerPlan) -> tuple[float, int]:
    """What a kubelet does on pod deletion: the preStop hook, then SIGTERM, SIGKILL at the grace period's end.

    Returns (seconds from the start of preStop to the exit, exit code).
    """
    started = time.monotonic()
    if plan.pre_stop:
        podman("exec", plan.name, *plan.pre_stop, timeout=plan.grace_seconds + 10, check=False)
    remaining = max(1, int(plan.grace_seconds - (time.monotonic() - started)))
    podman("stop", "--time", str(remaining), plan.name, timeout=plan.grace_seconds + 30)
    elapsed = time.monotonic() - started
    return elapsed, state(plan.name)[1]


def remove_labelled(label: str) -> None:
    """Removes the containers an earlier run left behind (killed before its teardown): those with its label."""
    found = podman("ps", "--all", "--quiet", "--filter", f"label={LABEL}={label}", check=False).stdout.split()
    for container_id in found:
        podman("rm", "--force", "--time", "0", container_id, check=False)
