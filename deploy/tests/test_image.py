"""The Dockerfile: hadolint-clean, the manifests' UID, every package of the project copied, the right commands."""

from __future__ import annotations

import re
import subprocess

from deploy.tests.conftest import DEPLOY, ROOT, UID, by_kind, containers, pod_spec, tool, workloads

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_the_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_is_multi_stage_on_slim_python_311_and_runs_as_the_manifests_uid(mainnet):
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert all(re.match(r"python:3\.11(\.\d+)?-slim", f) for f in froms)
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users[-1] == f"{UID}:{UID}"
    assert f"--uid {UID}" in DOCKERFILE.read_text()
    for workload in workloads(mainnet):
        assert pod_spec(workload)["securityContext"]["runAsUser"] == UID


def test_build_only_values_are_not_baked_into_the_final_image():
    final = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(final) if keyword == "FROM")
    runtime_env = " ".join(rest for keyword, rest in final[last_from:] if keyword in {"ENV", "ARG"})
    for name in ("DJANGO_SECRET_KEY", "JWT_SECRET", "DATABASE_URL", "ALLOWED_HOSTS", "DEBUG="):
        assert name not in runtime_env
    # The dummy values live only in the collectstatic command of the build stage, generated at build time.
    collect = next(rest for keyword, rest in final[:last_from] if keyword == "RUN" and "collectstatic" in rest)
    assert "DEBUG=false" in collect and "secrets.token_urlsafe" in collect


def test_every_project_package_is_copied():
    copied = {rest.split()[0].rstrip("/") for keyword, rest in instructions() if keyword == "COPY"
              and not rest.startswith("--from")}
    from django.conf import settings

    local_apps = {app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()}
    assert local_apps | {"fabric_client", "manage.py", "requirements.txt", "deploy/gunicorn.conf.py"} <= copied


def test_the_workloads_run_the_image_commands(mainnet):
    commands = {w["metadata"]["name"]: next(containers(w))["command"] for w in workloads(mainnet)}
    assert commands["svc-identity"] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
    assert commands["outbox-submitter"] == ["python", "manage.py", "run_submitter"]
    assert commands["projector"] == ["python", "manage.py", "run_projector"]
    assert commands["gxbackend-migrate"] == ["python", "manage.py", "migrate", "--noinput"]
    cmd = [rest for keyword, rest in instructions() if keyword == "CMD"][-1]
    assert cmd == '["gunicorn", "-c", "deploy/gunicorn.conf.py"]'
    for name in ("run_submitter", "run_projector"):
        assert any((ROOT / app / "management" / "commands" / f"{name}.py").exists() for app in ("outbox", "projector"))
    exposed = {int(p) for keyword, rest in instructions() if keyword == "EXPOSE" for p in rest.split()}
    ports = {p["containerPort"] for d in by_kind(mainnet, "Deployment").values()
             for p in pod_spec(d)["containers"][0]["ports"]}
    assert exposed == ports
