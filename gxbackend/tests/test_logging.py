"""Logs: one JSON line per event, carrying the request id, and never a secret."""

import io
import json
import logging

import pytest

from gxbackend.logging import JsonFormatter, RequestIdFilter

pytestmark = [pytest.mark.django_db, pytest.mark.urls("gxbackend.tests.urls_errors")]


@pytest.fixture
def log_lines():
    """Captures what the stdout handler would print, formatted by the real formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def test_a_well_formed_request_id_is_echoed_and_logged(api_client, log_lines):
    response = api_client.get("/livez", HTTP_X_REQUEST_ID="req-12345678-abc")
    assert response["X-Request-ID"] == "req-12345678-abc"
    access = [line for line in log_lines() if line["logger"] == "gxbackend.access"]
    assert access[-1]["request_id"] == "req-12345678-abc"
    assert access[-1]["status"] == 200 and access[-1]["path"] == "/livez"


def test_a_malformed_request_id_is_replaced_by_a_fresh_one(api_client):
    response = api_client.get("/livez", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert len(response["X-Request-ID"]) == 32
    other = api_client.get("/livez")
    assert other["X-Request-ID"] != response["X-Request-ID"]


def test_passwords_tokens_and_keys_never_reach_the_logs(api_client, log_lines):
    api_client.post("/t/crash", {"email": "a@example.com", "password": "hunter2-very-secret"}, format="json")
    api_client.get("/t/private", HTTP_AUTHORIZATION="Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.sig")
    logger = logging.getLogger("gxbackend.test")
    logger.info("login with password=hunter2-very-secret", extra={"refresh_token": "eyJ-refresh-secret"})
    text = "\n".join(json.dumps(line) for line in log_lines())
    assert any(line.get("level") == "error" for line in log_lines()), "the crash itself is logged"
    for secret in ("hunter2-very-secret", "c2VjcmV0LXRva2Vu", "eyJ-refresh-secret"):
        assert secret not in text


def test_every_line_is_one_json_object(api_client, log_lines):
    api_client.get("/health")
    api_client.post("/t/crash", {}, format="json")
    lines = log_lines()
    assert lines, "requests produce log lines"
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
