"""Login, refresh and logout: tokens with the right claims, one answer for every bad credential, revocation."""

import jwt
import pytest
from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher

from identity.tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN, REFRESH, LOGOUT, ME = "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout", "/api/v1/users/me"


def claims(token: str) -> dict:
    return jwt.decode(token, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"],
                      audience=settings.SIMPLE_JWT["AUDIENCE"], issuer=settings.SIMPLE_JWT["ISSUER"])


def login(api_client, email, password=PASSWORD):
    return api_client.post(LOGIN, {"email": email, "password": password}, format="json")


def test_login_returns_tokens_carrying_user_id_role_issuer_and_audience(api_client, person):
    response = login(api_client, person.user.email.upper())
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    assert body["user"]["id"] == str(person.pk) and body["user"]["email"] == person.user.email
    access = claims(body["access"])
    assert (access["user_id"], access["role"], access["token_type"]) == (str(person.pk), "user", "access")
    assert (access["iss"], access["aud"]) == ("gxbackend", "gx-api")
    assert claims(body["refresh"])["token_type"] == "refresh"
    me = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.status_code == 200 and me.json()["id"] == str(person.pk)


def test_staff_tokens_carry_the_admin_role(api_client, make_person):
    staff = make_person(staff=True)
    assert claims(login(api_client, staff.user.email).json()["access"])["role"] == "admin"


def test_unknown_email_and_wrong_password_get_the_same_answer(api_client, person):
    unknown = login(api_client, "nobody@example.com")
    wrong = login(api_client, person.user.email, "wrong-password-123")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["error"] == wrong.json()["error"]
    assert unknown.json()["error"]["code"] == "invalid_credentials"


def test_unknown_email_costs_one_password_hash_verification_like_a_wrong_password(api_client, person, monkeypatch):
    calls = []
    # Both argon2 hashers share the algorithm name; Django verifies with whichever it maps it to.
    original = Argon2PasswordHasher.verify

    def spy(self, password, encoded):
        calls.append(encoded)
        return original(self, password, encoded)

    monkeypatch.setattr(Argon2PasswordHasher, "verify", spy)
    login(api_client, "nobody@example.com")
    login(api_client, person.user.email, "wrong-password-123")
    assert len(calls) == 2
    assert calls[0] != person.user.password and calls[0].startswith("argon2$argon2id$")


def test_an_inactive_account_cannot_log_in(api_client, person):
    person.user.is_active = False
    person.user.save()
    response = login(api_client, person.user.email)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_credentials"


def test_login_names_missing_fields(api_client):
    response = api_client.post(LOGIN, {"email": "a@example.com"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["password"]


def test_refresh_rotates_and_the_used_refresh_token_is_then_refused(api_client, person):
    first = login(api_client, person.user.email).json()
    refreshed = api_client.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert refreshed.status_code == 200, refreshed.content
    assert set(refreshed.json()) == {"access", "refresh"}
    assert refreshed.json()["refresh"] != first["refresh"]
    assert claims(refreshed.json()["access"])["role"] == "user"
    again = api_client.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "token_not_valid"


def test_refresh_refuses_an_access_token_and_garbage(api_client, person):
    access = login(api_client, person.user.email).json()["access"]
    assert api_client.post(REFRESH, {"refresh": access}, format="json").status_code == 401
    assert api_client.post(REFRESH, {"refresh": "not.a.jwt"}, format="json").status_code == 401
    assert api_client.post(REFRESH, {}, format="json").status_code == 400


def test_logout_revokes_the_refresh_token(api_client, person):
    tokens = login(api_client, person.user.email).json()
    response = api_client.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 204
    refused = api_client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert refused.status_code == 401
    assert api_client.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json").status_code == 401


def test_a_stale_authorization_header_does_not_block_login(api_client, person):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer expired.or.garbage")
    assert login(api_client, person.user.email).status_code == 200
