"""The Dockerfile: hadolint-clean, the manifests' UID, every package of the project copied, the right commands."""

from __future__ import annotations

import fnmatch
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


def test_it_is_multi_stage_on_a_base_pinned_by_digest_and_runs_as_the_manifests_uid(mainnet):
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("${BASE_IMAGE} AS ") for f in froms)
    # The default is the official slim Python 3.11 image, pinned by digest (a tag moves; a digest does not).
    base = next(rest for keyword, rest in instructions() if keyword == "ARG" and rest.startswith("BASE_IMAGE="))
    assert re.fullmatch(r"BASE_IMAGE=python:3\.11(\.\d+)?-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users[-1] == f"{UID}:{UID}"
    assert f"--uid {UID}" in DOCKERFILE.read_text()
    for workload in workloads(mainnet):
        assert pod_spec(workload)["securityContext"]["runAsUser"] == UID


def test_it_needs_no_frontend_image_and_installs_exactly_the_lock():
    # A `# syntax=` line makes BuildKit pull a frontend image before the first step: nothing here needs one.
    assert not re.search(r"^#\s*syntax\s*=", DOCKERFILE.read_text(), re.MULTILINE | re.IGNORECASE)
    installs = [rest for keyword, rest in instructions() if keyword == "RUN" and "pip install" in rest]
    assert len(installs) == 1
    assert "--require-hashes" in installs[0] and "-r requirements.lock" in installs[0]


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_context_leaves_out_local_state_but_not_what_the_image_copies():
    patterns = dockerignore_patterns()
    assert {".git", ".venv", "var"} <= set(patterns)
    sources = [part.rstrip("/") for keyword, rest in instructions() if keyword == "COPY"
               and not rest.startswith("--from") for part in rest.split()[:-1]]
    for source in sources:
        excluded = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(source, p.lstrip("/"))]
        assert not excluded, f"COPY {source} is excluded from the build context by .dockerignore {excluded}"


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
    assert local_apps | {"fabric_client", "manage.py", "requirements.lock", "deploy/gunicorn.conf.py"} <= copied


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
