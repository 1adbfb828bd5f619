"""Who may call what: own / other user / staff / anonymous / expired / tampered / refresh-as-access."""

from datetime import timedelta

import jwt
import pytest
from django.conf import settings

from identity.tests.conftest import kyc_body
from identity.tokens import GxTokenObtainPairSerializer

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_person):
    return make_person(first_name="Alice")


@pytest.fixture
def bob(make_person):
    return make_person(first_name="Bob")


@pytest.fixture
def staff(make_person):
    return make_person(staff=True)


def call(client, method, path, profile):
    path = path.format(id=profile.pk)
    if method == "get":
        return client.get(path)
    if method == "patch":
        return client.patch(path, {"phone": "+4915112345678"}, format="json")
    return client.post(path, kyc_body(), format="json")


ENDPOINTS = [("get", "/api/v1/users/{id}"), ("patch", "/api/v1/users/{id}"), ("post", "/api/v1/users/{id}/kyc")]
OK = {"get": 200, "patch": 200, "post": 202}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_own_profile_is_allowed(client_for, alice, method, path):
    assert call(client_for(alice.user), method, path, alice).status_code == OK[method]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_another_users_id_answers_404_like_a_missing_one(client_for, alice, bob, method, path):
    other = call(client_for(alice.user), method, path, bob)
    assert other.status_code == 404
    bob.user.delete()
    missing = call(client_for(alice.user), method, path, bob)
    assert missing.status_code == 404
    assert other.json()["error"]["message"] == missing.json()["error"]["message"]


def test_staff_may_read_any_profile(client_for, alice, staff):
    response = client_for(staff.user).get(f"/api/v1/users/{alice.pk}")
    assert response.status_code == 200 and response.json()["id"] == str(alice.pk)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS[1:])
def test_staff_may_not_change_another_users_profile_through_the_api(client_for, alice, staff, method, path):
    assert call(client_for(staff.user), method, path, alice).status_code == 403


@pytest.mark.parametrize(("method", "path"), [*ENDPOINTS, ("get", "/api/v1/users/me")])
def test_anonymous_callers_get_401(api_client, alice, method, path):
    response = call(api_client, method, path, alice)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def forged(user, **changes) -> str:
    """A valid access token signed with our key, with ``changes`` applied to its claims (simplejwt's own
    encoder would put our iss/aud back, so sign with PyJWT)."""
    token = str(GxTokenObtainPairSerializer.get_token(user).access_token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode({**claims, **changes}, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")


def _bad_tokens(user):
    good = forged(user)
    header, payload, signature = good.split(".")
    expired = GxTokenObtainPairSerializer.get_token(user).access_token
    expired.set_exp(lifetime=-timedelta(minutes=5))
    claims = jwt.decode(good, options={"verify_signature": False})
    return {
        "expired": str(expired),
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "tampered payload (role)": jwt.encode({**claims, "role": "admin"}, "not-our-secret-but-long-enough-1234",
                                              algorithm="HS256"),
        "wrong audience": forged(user, aud="another-api"),
        "wrong issuer": forged(user, iss="someone-else"),
        "refresh used as access": str(GxTokenObtainPairSerializer.get_token(user)),
        "alg none": jwt.encode({**claims}, None, algorithm="none"),
    }


@pytest.mark.parametrize("kind", ["expired", "tampered signature", "tampered payload (role)", "wrong audience",
                                  "wrong issuer", "refresh used as access", "alg none"])
@pytest.mark.parametrize(("method", "path"), [*ENDPOINTS, ("get", "/api/v1/users/me")])
def test_bad_tokens_get_401(api_client, alice, kind, method, path):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {_bad_tokens(alice.user)[kind]}")
    response = call(api_client, method, path, alice)
    assert response.status_code == 401, (kind, response.content)
    assert response.json()["error"]["code"] == "token_not_valid"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_good_token_of_the_same_kind_is_accepted(api_client, alice):
    # Guards the test above: the forging helper itself makes valid tokens when nothing is changed.
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged(alice.user)}")
    assert api_client.get("/api/v1/users/me").status_code == 200
    assert settings.SIMPLE_JWT["AUDIENCE"] == "gx-api"


def test_a_deactivated_users_token_stops_working(client_for, alice):
    client = client_for(alice.user)
    alice.user.is_active = False
    alice.user.save()
    assert client.get("/api/v1/users/me").status_code == 401
