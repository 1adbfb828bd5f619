"""POST /api/v1/users: registration answers 201 with the profile, or names each bad field."""

import pytest

from identity.models import ProfileStatus, User
from identity.tests.conftest import PASSWORD, register_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/users"


def test_it_registers_a_person_and_answers_with_the_profile(api_client):
    body = register_body(email="Ada.Obi@Example.COM")
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    profile = response.json()
    assert set(profile) == {"id", "email", "first_name", "last_name", "date_of_birth", "nationality", "phone",
                            "status", "onchain_error", "created_at", "updated_at"}
    assert profile["onchain_error"] == ""
    assert profile["email"] == "ada.obi@example.com"
    assert profile["status"] == ProfileStatus.REGISTERED
    assert (profile["first_name"], profile["last_name"], profile["date_of_birth"], profile["nationality"],
            profile["phone"]) == ("Ada", "Obi", "1990-05-17", "NG", "+2348012345678")
    user = User.objects.get(pk=profile["id"])
    assert user.check_password(PASSWORD)
    assert user.password.startswith("argon2$argon2id$")


def test_phone_is_optional_and_nationality_is_upper_cased(api_client):
    body = register_body(nationality="de")
    del body["phone"]
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["phone"], response.json()["nationality"]) == ("", "DE")


def test_an_email_taken_in_any_case_answers_409_naming_email(api_client, person):
    response = api_client.post(URL, register_body(email=person.user.email.upper()), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"
    assert list(response.json()["error"]["fields"]) == ["email"]
    assert User.objects.filter(email__iexact=person.user.email).count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"password": "short1"}, "password"),
        ({"password": "password123"}, "password"),  # common
        ({"password": "8274619350123"}, "password"),  # all digits
        ({"password": "person.obinna@example.com", "email": "person.obinna@example.com"}, "password"),  # similar
        ({"first_name": ""}, "first_name"),
        ({"last_name": "x" * 101}, "last_name"),
        ({"date_of_birth": "17/05/1990"}, "date_of_birth"),
        ({"date_of_birth": "2999-01-01"}, "date_of_birth"),
        ({"date_of_birth": "1800-01-01"}, "date_of_birth"),
        ({"nationality": "XX"}, "nationality"),
        ({"nationality": "NGA"}, "nationality"),
        ({"phone": "08012345678"}, "phone"),
        ({"phone": "+0123"}, "phone"),
        ({"role": "admin"}, "role"),  # unknown fields are refused, not ignored
    ],
)
def test_each_bad_field_answers_400_naming_it(api_client, overrides, field):
    response = api_client.post(URL, register_body(**overrides), format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]
    assert User.objects.count() == 0


def test_missing_fields_are_each_named(api_client):
    response = api_client.post(URL, {"email": "a@example.com"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"password", "first_name", "last_name", "date_of_birth",
                                                       "nationality"}


def test_a_body_over_the_size_limit_answers_413(api_client, settings):
    body = register_body(first_name="x" * (settings.MAX_REQUEST_BODY_BYTES + 1))
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
