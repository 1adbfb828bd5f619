"""Every error the API returns has the one documented JSON shape (docs/DESIGN.md §2)."""

import pytest
from django.contrib.auth import get_user_model

pytestmark = [pytest.mark.django_db, pytest.mark.urls("gxbackend.tests.urls_errors")]


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] == response["X-Request-ID"]
    if code is not None:
        assert body["error"]["code"] == code
    return body


def test_invalid_fields_answer_400_with_each_field_named(api_client):
    body = assert_error_shape(api_client.post("/t/validate", {"email": "nope", "age": -1}, format="json"), 400,
                              "validation_error")
    assert set(body["error"]["fields"]) == {"email", "age"}
    assert all(isinstance(m, str) for messages in body["error"]["fields"].values() for m in messages)


def test_malformed_json_answers_400(api_client):
    response = api_client.post("/t/validate", data="{not json", content_type="application/json")
    assert_error_shape(response, 400, "parse_error")


def test_missing_credentials_answer_401(api_client):
    response = api_client.get("/t/private")
    assert_error_shape(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_non_staff_user_gets_403(api_client):
    user = get_user_model().objects.create_user("plain@example.com", "a-long-password-1")
    api_client.force_authenticate(user)
    assert_error_shape(api_client.get("/t/staff"), 403, "permission_denied")


def test_unknown_url_answers_404_in_json(api_client):
    assert_error_shape(api_client.get("/api/v1/nothing-here"), 404, "not_found")


def test_unknown_api_url_answers_404_in_json_in_debug_mode_too(api_client, settings):
    settings.DEBUG = True  # make run: Django would answer with its HTML debug page
    assert_error_shape(api_client.get("/api/v1/nothing-here"), 404, "not_found")


def test_unknown_urls_outside_the_api_keep_the_debug_page_in_debug_mode(api_client, settings):
    settings.DEBUG = True
    response = api_client.get("/nothing-here")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_wrong_method_answers_405(api_client):
    assert_error_shape(api_client.get("/t/conflict"), 405, "method_not_allowed")


def test_domain_conflict_answers_409_with_its_code(api_client):
    assert_error_shape(api_client.post("/t/conflict", {}, format="json"), 409, "kyc_pending")


def test_body_over_the_limit_answers_413_before_parsing(api_client, settings):
    big = "x" * (settings.MAX_REQUEST_BODY_BYTES + 1)
    response = api_client.post("/t/validate", data=big, content_type="application/json")
    assert_error_shape(response, 413, "payload_too_large")


def test_throttled_request_answers_429_with_retry_after(api_client):
    assert api_client.get("/t/throttled").status_code == 200
    response = api_client.get("/t/throttled")
    assert_error_shape(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_crash_answers_500_without_a_traceback(api_client):
    response = api_client.post("/t/crash", {"password": "hunter2-very-secret"}, format="json")
    body = assert_error_shape(response, 500, "server_error")
    text = response.content.decode()
    assert "Traceback" not in text and "RuntimeError" not in text and "boom" not in text
    assert body["error"]["fields"] == {}


def test_an_unreachable_database_answers_503_with_retry_after_not_500(api_client, caplog):
    response = api_client.post("/t/database-down", {}, format="json")
    body = assert_error_shape(response, 503, "database_unavailable")
    assert response["Retry-After"] == "1"
    assert "Idempotency-Key" in body["error"]["message"]
    assert "shutting down" not in response.content.decode()  # the driver's message stays in the logs
    assert not [r for r in caplog.records if r.exc_info]  # an outage, not a crash: no traceback logged


def test_an_unreachable_database_outside_the_api_views_answers_503_too(client):
    client.raise_request_exception = False
    response = client.get("/t/database-down-plain")
    assert_error_shape(response, 503, "database_unavailable")
    assert response["Retry-After"] == "1"
