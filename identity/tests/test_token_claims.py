"""A correctly signed token whose user_id is missing, of the wrong type or not a UUID is a 401, never a 500."""

import logging
import uuid

import pytest
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

pytestmark = pytest.mark.django_db
MISSING = object()
ODD_USER_IDS = {"not a uuid": "not-a-uuid", "integer": 12345, "null": None, "list": ["x"], "object": {"id": "x"},
                "empty": "", "2,000 digits": "1" * 2000, "missing": MISSING}


def signed(token_class, user_id) -> str:
    token = token_class()  # signed with the API's own key, iss/aud set: only the claim is odd
    if user_id is not MISSING:
        token["user_id"] = user_id
    return str(token)


def no_errors_logged(caplog) -> bool:
    return not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("user_id", ODD_USER_IDS.values(), ids=ODD_USER_IDS.keys())
@pytest.mark.parametrize("path", ["/api/v1/users/me", f"/api/v1/commands/{uuid.uuid4()}",
                                  f"/api/v1/users/{uuid.uuid4()}/wallet"])
def test_an_access_token_with_an_odd_user_id_is_a_401(api_client, caplog, user_id, path):
    response = api_client.get(path, HTTP_AUTHORIZATION=f"Bearer {signed(AccessToken, user_id)}")
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "token_not_valid"
    assert no_errors_logged(caplog)


@pytest.mark.parametrize("user_id", ODD_USER_IDS.values(), ids=ODD_USER_IDS.keys())
@pytest.mark.parametrize("path", ["/api/v1/auth/refresh", "/api/v1/auth/logout"])
def test_a_refresh_token_with_an_odd_user_id_is_a_401(api_client, caplog, user_id, path):
    response = api_client.post(path, {"refresh": signed(RefreshToken, user_id)}, format="json")
    assert response.status_code == 401, response.content
    assert no_errors_logged(caplog)


def test_a_token_naming_a_real_user_still_works(api_client, person):
    response = api_client.get("/api/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {signed(AccessToken, str(person.pk))}")
    assert response.status_code == 200
    assert response.json()["id"] == str(person.pk)
