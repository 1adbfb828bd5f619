"""The rendered manifests: valid for Kubernetes 1.25+, restricted, probed, sized, wired to the code's ports."""

from __future__ import annotations

import runpy
from typing import Any

import kubernetes_validate
import pytest

from deploy.tests.conftest import (
    GUNICORN_CONF,
    NAMESPACE,
    UID,
    by_kind,
    containers,
    pod_spec,
    production_settings,
    workloads,
)

# Oldest supported and newest known: kubernetes-validate picks the closest schema not newer than the version.
K8S_VERSIONS = ["1.25.0", kubernetes_validate.utils.latest_version()]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
DEPLOYMENTS = {"svc-identity": 3, "outbox-submitter": 2, "projector": 2}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_resource_validates_against_the_kubernetes_schema(mainnet, base, examples, version):
    checked = 0
    for doc in [*mainnet, *base, *examples]:
        if doc["kind"] in CRD_KINDS:
            continue  # no schema in kubernetes-validate; test_monitoring checks their structure
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {version}: {path}: {exc.message}")
        checked += 1
    assert checked > 30


def test_the_overlay_renders_every_resource_the_operator_needs(mainnet):
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in mainnet}
    for expected in [
        ("Namespace", NAMESPACE), ("ConfigMap", "backend-config"),
        ("ServiceAccount", "svc-identity"), ("ServiceAccount", "outbox-submitter"), ("ServiceAccount", "projector"),
        ("Deployment", "svc-identity"), ("Deployment", "outbox-submitter"), ("Deployment", "projector"),
        ("Service", "svc-identity"), ("Service", "outbox-submitter-metrics"), ("Service", "projector-metrics"),
        ("HorizontalPodAutoscaler", "svc-identity"), ("PodDisruptionBudget", "svc-identity"),
        ("Job", "gxbackend-migrate"), ("CronJob", "gxbackend-purge-idempotency-records"),
        ("CronJob", "gxbackend-purge-expired-tokens"),
        ("ServiceAccount", "gxbackend-maintenance"), ("NetworkPolicy", "default-deny-all"),
        ("ServiceMonitor", "svc-identity"), ("ServiceMonitor", "outbox-submitter"), ("ServiceMonitor", "projector"),
        ("PrometheusRule", "gxbackend"), ("ConfigMap", "gxbackend-grafana-dashboard"),
    ]:
        assert expected in kinds, f"{expected} missing from the mainnet overlay"


def test_the_namespace_enforces_the_restricted_profile_and_holds_everything(mainnet):
    namespace = by_kind(mainnet, "Namespace")[NAMESPACE]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in mainnet:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"


def test_no_secret_is_committed(mainnet, base, examples):
    assert not [doc for doc in [*mainnet, *base, *examples] if doc["kind"] == "Secret"]


@pytest.mark.parametrize("name,replicas", DEPLOYMENTS.items())
def test_deployments_have_their_replicas(mainnet, name, replicas):
    assert by_kind(mainnet, "Deployment")[name]["spec"]["replicas"] == replicas


def test_every_container_meets_the_restricted_profile(mainnet):
    for workload in workloads(mainnet):
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] == UID and context["runAsGroup"] == UID, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert not context["capabilities"].get("add"), where
            assert context["seccompProfile"]["type"] == "RuntimeDefault", where
            assert "privileged" not in context or context["privileged"] is False, where
            # With a read-only root, /tmp is the one writable path the processes need.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where


def test_service_accounts_mount_no_token(mainnet):
    for account in by_kind(mainnet, "ServiceAccount").values():
        assert account["automountServiceAccountToken"] is False
    for workload in workloads(mainnet):
        assert pod_spec(workload)["serviceAccountName"] in by_kind(mainnet, "ServiceAccount")


def test_every_container_has_requests_limits_and_long_running_ones_have_probes(mainnet):
    for workload in workloads(mainnet):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            if workload["kind"] == "Deployment":
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    assert "httpGet" in container[probe], f"{where} {probe}"


def test_probes_use_the_processes_health_paths(mainnet):
    for deployment in by_kind(mainnet, "Deployment").values():
        container = pod_spec(deployment)["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/health"


def test_the_api_readiness_probe_does_not_gate_on_projection_lag(mainnet):
    """A stuck projector must not take every API pod out of the Service: failing /readyz on lag is opt-in."""
    from gxbackend.env import _FALSE

    config = by_kind(mainnet, "ConfigMap")["backend-config"]["data"]
    assert config["READYZ_FAIL_ON_PROJECTION_LAG"].strip().lower() in _FALSE


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def manifest_env(mainnet, deployment: str) -> dict[str, str]:
    """The environment a container starts with: ConfigMap (envFrom), literal env, dummy secret values."""
    config = by_kind(mainnet, "ConfigMap")["backend-config"]["data"]
    container = pod_spec(by_kind(mainnet, "Deployment")[deployment])["containers"][0]
    env = dict(config)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


@pytest.fixture(scope="module")
def listening_ports(mainnet, tmp_path_factory) -> dict[str, int]:
    """The port each process listens on, computed by the code from the manifests' environment."""
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "django-secret-key").write_text("k" * 64)
    (secrets / "jwt-secret").write_text("j" * 40)
    (secrets / "database-url").write_text("postgres://gx:secret@db.invalid:5432/gx")
    (secrets / "redis-url").write_text("redis://cache.invalid:6379/0")
    ports = {}
    for name, setting in (("outbox-submitter", "SUBMITTER_METRICS_PORT"), ("projector", "PROJECTOR_METRICS_PORT")):
        env = manifest_env(mainnet, name)
        # The Secret's files, where the pod mounts them, are here in this temporary folder.
        for key, value in list(env.items()):
            if key.endswith("_FILE") and value.startswith("/etc/gx/secrets/"):
                env[key] = str(secrets / value.rsplit("/", 1)[1])
        ports[name] = production_settings(env, [setting])[setting]
    api_env = manifest_env(mainnet, "svc-identity")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in api_env.items():
            patch.setenv(key, value)
        patch.delenv("GUNICORN_BIND", raising=False)
        bind = runpy.run_path(str(GUNICORN_CONF))["bind"]
    ports["svc-identity"] = int(bind.rsplit(":", 1)[1])
    return ports


def test_the_production_settings_start_with_the_manifests_environment(listening_ports):
    assert listening_ports == {"svc-identity": 3001, "outbox-submitter": 9090, "projector": 9091}


def test_container_probe_and_service_ports_are_the_ports_the_processes_listen_on(mainnet, listening_ports):
    deployments = by_kind(mainnet, "Deployment")
    for name, port in listening_ports.items():
        container = pod_spec(deployments[name])["containers"][0]
        assert [p["containerPort"] for p in container["ports"]] == [port], name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert _port_number(container, container[probe]["httpGet"]["port"]) == port, f"{name} {probe}"
    services = by_kind(mainnet, "Service")
    for service_name, deployment in (("svc-identity", "svc-identity"), ("outbox-submitter-metrics", "outbox-submitter"),
                                     ("projector-metrics", "projector")):
        service = services[service_name]
        pod_labels = deployments[deployment]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items(), service_name
        container = pod_spec(deployments[deployment])["containers"][0]
        for port in service["spec"]["ports"]:
            assert _port_number(container, port["targetPort"]) == listening_ports[deployment], service_name
    assert services["svc-identity"]["spec"]["ports"][0]["port"] == 80


def test_gunicorn_timeouts_fit_in_the_api_grace_period(mainnet):
    conf = runpy.run_path(str(GUNICORN_CONF))
    spec = pod_spec(by_kind(mainnet, "Deployment")["svc-identity"])
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert int(pre_stop[1]) + conf["graceful_timeout"] < spec["terminationGracePeriodSeconds"]
    assert conf["timeout"] < spec["terminationGracePeriodSeconds"]
    assert conf["control_socket_disable"] is True
    assert conf["worker_tmp_dir"] == "/tmp"


def test_the_submitter_grace_period_is_longer_than_one_unit_of_work(mainnet):
    config = by_kind(mainnet, "ConfigMap")["backend-config"]["data"]
    unit = sum(float(config[key]) for key in (
        "FABRIC_ENDORSE_TIMEOUT", "FABRIC_SUBMIT_TIMEOUT", "FABRIC_COMMIT_STATUS_TIMEOUT"))
    grace = pod_spec(by_kind(mainnet, "Deployment")["outbox-submitter"])["terminationGracePeriodSeconds"]
    assert grace > unit
    assert grace > float(config["OUTBOX_SHUTDOWN_GRACE_SECONDS"])
    projector = pod_spec(by_kind(mainnet, "Deployment")["projector"])["terminationGracePeriodSeconds"]
    assert projector > float(config["PROJECTOR_RETRY_MAX_SECONDS"])


def test_the_api_scales_safely(mainnet):
    deployment = by_kind(mainnet, "Deployment")["svc-identity"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod_spec(deployment)["affinity"]["podAntiAffinity"]
    hpa = by_kind(mainnet, "HorizontalPodAutoscaler")["svc-identity"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    pdb = by_kind(mainnet, "PodDisruptionBudget")["svc-identity"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_fabric_credentials_are_mounted_read_only_where_fabric_is_called(mainnet):
    deployments = by_kind(mainnet, "Deployment")
    config = by_kind(mainnet, "ConfigMap")["backend-config"]["data"]
    for name in ("outbox-submitter", "projector"):
        spec = pod_spec(deployments[name])
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/etc/fabric")
        assert mount["readOnly"] is True
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "fabric-credentials"
        files = {f"/etc/fabric/{item['path']}" for item in volume["secret"]["items"]}
        assert {config["FABRIC_CERT_PATH"], config["FABRIC_KEY_PATH"], config["FABRIC_TLS_CA_PATH"]} == files
    # A request never calls Fabric: the API gets no Fabric key.
    api = pod_spec(deployments["svc-identity"])
    assert all(v.get("secret", {}).get("secretName") != "fabric-credentials" for v in api["volumes"])


def test_secret_files_named_in_env_are_mounted(mainnet):
    for workload in workloads(mainnet):
        spec = pod_spec(workload)
        for container in containers(workload):
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            for item in container.get("env", []):
                if item["name"].endswith("_FILE"):
                    directory, _, filename = item["value"].rpartition("/")
                    mount = mounts[directory]
                    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
                    assert filename in {i["path"] for i in volume["secret"]["items"]}
                    assert mount["readOnly"] is True


def test_the_migration_job_runs_migrate(mainnet):
    job = by_kind(mainnet, "Job")["gxbackend-migrate"]
    assert pod_spec(job)["containers"][0]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert pod_spec(job)["restartPolicy"] == "Never"


@pytest.mark.parametrize("name,command", [
    ("gxbackend-purge-idempotency-records", "purge_idempotency_records"),
    ("gxbackend-purge-expired-tokens", "purge_expired_tokens"),
])
def test_housekeeping_runs_daily_by_a_command_the_code_has(mainnet, name, command):
    from django.core.management import get_commands

    cron = by_kind(mainnet, "CronJob")[name]
    argv = pod_spec(cron)["containers"][0]["command"]
    assert argv[:3] == ["python", "manage.py", command]
    assert argv[2] in get_commands()
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *every_day = cron["spec"]["schedule"].split()
    assert every_day == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()


def test_every_workload_runs_the_one_image(mainnet):
    images = {c["image"] for w in workloads(mainnet) for c in containers(w)}
    assert len(images) == 1
    (image,) = images
    assert ":" in image.rsplit("/", 1)[1] and not image.endswith(":latest")


def _policy_ports(policy: dict[str, Any], direction: str) -> set[int]:
    return {port["port"] for rule in policy["spec"].get(direction, []) for port in rule.get("ports", [])}


def test_network_policies_deny_by_default_and_open_only_the_needed_ports(mainnet, listening_ports):
    policies = by_kind(mainnet, "NetworkPolicy")
    deny = policies["default-deny-all"]
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    egress = set().union(*(_policy_ports(p, "egress") for p in policies.values()))
    ingress = set().union(*(_policy_ports(p, "ingress") for p in policies.values()))
    assert egress == {53, 5432, 6379, 7050, 7051}
    assert ingress == set(listening_ports.values())
    fabric = policies["allow-fabric-egress"]["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(fabric) == ["outbox-submitter", "projector"]


def test_examples_expose_the_api_and_the_ingress_terminates_tls(examples, listening_ports):
    ingress = by_kind(examples, "Ingress")["svc-identity"]
    assert ingress["spec"]["tls"][0]["secretName"]
    hosts = set(ingress["spec"]["tls"][0]["hosts"])
    assert {rule["host"] for rule in ingress["spec"]["rules"]} <= hosts
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert "/metrics" not in paths and "/" not in paths  # metrics and probes stay inside the cluster
    types = {s["spec"]["type"] for s in by_kind(examples, "Service").values()}
    assert types == {"NodePort", "LoadBalancer"}
    for service in by_kind(examples, "Service").values():
        assert service["spec"]["ports"][0]["targetPort"] == listening_ports["svc-identity"]
