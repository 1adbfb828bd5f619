"""The OpenAPI schema generates without a single warning (`make test` fails otherwise) and is served."""

import subprocess
import sys

import pytest
from django.conf import settings


def test_schema_generation_passes_validate_and_fail_on_warn(tmp_path, subprocess_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file",
         str(tmp_path / "schema.yaml")],
        cwd=settings.BASE_DIR, env=subprocess_env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr
    schema = (tmp_path / "schema.yaml").read_text()
    for path in ("/api/v1/users:", "/api/v1/users/me:", "/api/v1/users/{user_id}:", "/api/v1/users/{user_id}/kyc:",
                 "/api/v1/auth/login:", "/api/v1/auth/refresh:", "/api/v1/auth/logout:",
                 "/api/v1/commands/{command_id}:", "/api/v1/users/{user_id}/wallet:",
                 "/api/v1/users/{user_id}/transactions:", "/api/v1/transfers:"):
        assert path in schema
    assert "TransferInputRequest" in schema


@pytest.mark.django_db
def test_schema_and_swagger_ui_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
