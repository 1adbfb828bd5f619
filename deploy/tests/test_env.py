"""Every variable the manifests set is read by the code, and backend-config covers every knob the settings read."""

from __future__ import annotations

from deploy.tests.conftest import (
    GUNICORN_CONF,
    SETTINGS_PY,
    by_kind,
    containers,
    env_vars_read,
    workloads,
)

# Read by the settings but deliberately not in backend-config, each with its reason.
NOT_IN_CONFIGMAP = {
    # Secrets: files mounted from the backend-secrets Secret (*_FILE), never environment values.
    "DJANGO_SECRET_KEY": "secret; set as DJANGO_SECRET_KEY_FILE",
    "DJANGO_SECRET_KEY_FILE": "per container, points at the mounted secret",
    "JWT_SECRET": "secret; set as JWT_SECRET_FILE",
    "JWT_SECRET_FILE": "per container, points at the mounted secret",
    "DATABASE_URL": "secret (holds the password); set as DATABASE_URL_FILE",
    "DATABASE_URL_FILE": "per container, points at the mounted secret",
    "REDIS_URL": "secret (may hold the password); set as REDIS_URL_FILE",
    "REDIS_URL_FILE": "per container, points at the mounted secret",
    # Per container or per image.
    "PROMETHEUS_MULTIPROC_DIR": "only the API container (gunicorn workers); the single-process workers must not",
    "STATIC_ROOT": "set in the image, where collectstatic wrote the files at build time",
    # Retired: its presence stops start-up with a message naming TRUSTED_PROXY_CIDRS, its replacement.
    "TRUSTED_PROXY_COUNT": "retired; settings refuse it so an old value is not silently ignored",
    # Development and tests only.
    "GX_VAR_DIR": "SQLite file and devnet credentials of `make run`; unused with DATABASE_URL and /etc/fabric",
}


def test_every_variable_the_manifests_set_is_read_by_the_settings(mainnet):
    settings_vars = env_vars_read(SETTINGS_PY)
    gunicorn_vars = env_vars_read(GUNICORN_CONF)
    config = by_kind(mainnet, "ConfigMap")["backend-config"]["data"]
    dead = sorted(set(config) - settings_vars)
    assert not dead, f"backend-config keys nothing reads: {dead}"
    for workload in workloads(mainnet):
        for container in containers(workload):
            readers = settings_vars | (gunicorn_vars if container["command"][0] == "gunicorn" else set())
            for item in container.get("env", []):
                assert item["name"] in readers, f"{workload['metadata']['name']} sets {item['name']}, read by nothing"
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == "backend-config"


def test_backend_config_holds_every_knob_the_settings_read():
    """New settings must be added to deploy/k8s/base/configmap.yaml (or above, with the reason)."""
    from deploy.tests.conftest import BASE, load_yaml_files

    config = by_kind(load_yaml_files(BASE), "ConfigMap")["backend-config"]["data"]
    missing = sorted(env_vars_read(SETTINGS_PY) - set(config) - set(NOT_IN_CONFIGMAP))
    assert not missing, f"settings read {missing}: add them to backend-config (or to NOT_IN_CONFIGMAP with a reason)"
    stale = sorted(set(NOT_IN_CONFIGMAP) - env_vars_read(SETTINGS_PY))
    assert not stale, f"NOT_IN_CONFIGMAP names variables the settings no longer read: {stale}"


def test_secrets_are_mounted_files_never_environment_values(mainnet):
    for workload in workloads(mainnet):
        for container in containers(workload):
            env = {item["name"]: item for item in container.get("env", [])}
            for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "JWT_SECRET"):
                assert name not in env, f"{name} must come from {name}_FILE, a file of the mounted Secret"
            mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
            for name in ("DATABASE_URL_FILE", "DJANGO_SECRET_KEY_FILE", "JWT_SECRET_FILE"):
                assert env[name]["value"].startswith(mounts["backend-secrets"] + "/"), (workload["metadata"]["name"],
                                                                                          name)


def test_only_the_api_sets_the_multiprocess_metrics_directory(mainnet):
    for workload in workloads(mainnet):
        for container in containers(workload):
            env = {item["name"]: item.get("value") for item in container.get("env", [])}
            if container["command"][0] == "gunicorn":
                assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
            else:
                assert "PROMETHEUS_MULTIPROC_DIR" not in env
    config = by_kind(mainnet, "ConfigMap")["backend-config"]["data"]
    assert "PROMETHEUS_MULTIPROC_DIR" not in config
    assert config["DEBUG"] == "false"


def test_the_reader_finds_the_settings_variables():
    names = env_vars_read(SETTINGS_PY)
    assert {"DEBUG", "DATABASE_URL", "JWT_SECRET", "JWT_SECRET_FILE", "SUBMITTER_METRICS_PORT",
            "PROMETHEUS_MULTIPROC_DIR"} <= names
