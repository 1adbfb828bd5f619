"""The API's JSON parser: a deep, broken or undecodable body is a 400, never a 500 with a traceback."""

import logging

import pytest

from gxbackend.parsers import MAX_JSON_DEPTH, json_depth_exceeds

pytestmark = pytest.mark.django_db


def errors_logged(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/auth/login", "/api/v1/auth/refresh"])
def test_json_nested_a_thousand_deep_is_a_400_without_a_traceback(api_client, caplog, path):
    body = "[" * 1000 + "]" * 1000  # ~2 KB; json.loads alone raises RecursionError on it
    response = api_client.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert "nested deeper" in response.json()["error"]["message"]
    assert errors_logged(caplog) == []


def test_an_object_nested_just_within_the_limit_reaches_the_fields_check(api_client):
    body = {"email": "a@example.com", "password": "x" * 12}
    inner: object = "x"
    for _ in range(MAX_JSON_DEPTH - 1):
        inner = [inner]
    body["first_name"] = inner
    response = api_client.post("/api/v1/auth/login", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"  # parsed, then refused field by field


def test_the_depth_scan_skips_brackets_inside_strings():
    assert not json_depth_exceeds('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[["}', 3)
    assert json_depth_exceeds('{"a": [[[1]]]}', 3)


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"a": NaN}', b'{"a": 1', b""])
def test_undecodable_or_broken_json_is_a_400(api_client, body):
    response = api_client.post("/api/v1/auth/login", body, content_type="application/json")
    assert response.status_code == 400


