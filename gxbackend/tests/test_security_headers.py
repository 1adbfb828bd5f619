"""HSTS (on by default in production, off in development), a CSP on every page, Swagger UI served locally."""

import json
import os
import re
import subprocess
import sys

import pytest
from django.conf import settings

from gxbackend.tests.test_settings import GOOD, ROOT

pytestmark = pytest.mark.django_db


def setting_in_a_fresh_process(name: str, env_changes: dict[str, str]) -> object:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JWT_", "SECURE_", "TRUSTED_"))}
    env.pop("REDIS_URL", None)
    env.update({**GOOD, **env_changes, "DJANGO_SETTINGS_MODULE": "gxbackend.settings"})
    code = f"import json; from django.conf import settings; print(json.dumps(settings.{name}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_hsts_is_a_year_in_production_off_in_development_and_configurable(tmp_path):
    assert setting_in_a_fresh_process("SECURE_HSTS_SECONDS", {}) == 31_536_000
    assert setting_in_a_fresh_process("SECURE_HSTS_SECONDS", {"DEBUG": "true", "GX_VAR_DIR": str(tmp_path)}) == 0
    assert setting_in_a_fresh_process("SECURE_HSTS_SECONDS", {"SECURE_HSTS_SECONDS": "600"}) == 600


def test_https_responses_carry_hsts(client, settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    response = client.get("/api/docs/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def csp(response) -> dict[str, str]:
    return {part.split()[0]: part for part in (p.strip() for p in response["Content-Security-Policy"].split(";"))}


@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/"])
def test_the_admin_and_the_docs_allow_scripts_from_this_origin_only(client, path):
    response = client.get(path)
    assert response.status_code == 200
    policy = csp(response)
    assert policy["script-src"] == "script-src 'self'"  # no inline script, no CDN
    assert policy["frame-ancestors"] == "frame-ancestors 'none'" and policy["object-src"] == "object-src 'none'"


def test_api_responses_get_a_policy_that_renders_nothing(api_client):
    response = api_client.get("/api/v1/users/me")
    assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_swagger_ui_and_its_assets_are_served_by_the_app(client):
    page = client.get("/api/docs/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and not [src for src in sources if "//" in src], sources  # nothing from another origin
    for asset in [src for src in sources if src.startswith(settings.STATIC_URL) or src.startswith("/static/")]:
        assert client.get(asset).status_code == 200, asset
    init = client.get("/api/docs/?script=")
    assert init.status_code == 200 and init["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in init.content.decode()
