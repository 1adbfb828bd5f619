"""GET/PATCH /api/v1/users/:id and /users/me: reading and editing one's own profile."""

import pytest

from identity.models import ProfileStatus, UserProfile

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/users/{id}"])
def test_a_user_reads_their_own_profile(client_for, person, path):
    response = client_for(person.user).get(path.format(id=person.pk))
    assert response.status_code == 200
    assert response.json()["id"] == str(person.pk)
    assert response.json()["email"] == person.user.email


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/users/{id}"])
def test_a_user_edits_their_own_profile(client_for, person, path):
    changes = {"first_name": "Adaeze", "last_name": "Okafor", "date_of_birth": "1991-01-02", "nationality": "gh",
               "phone": "+233201234567"}
    response = client_for(person.user).patch(path.format(id=person.pk), changes, format="json")
    assert response.status_code == 200, response.content
    assert {k: response.json()[k] for k in changes} == {**changes, "nationality": "GH"}
    person.refresh_from_db()
    assert (person.first_name, person.nationality, person.phone) == ("Adaeze", "GH", "+233201234567")


def test_phone_can_be_cleared(client_for, person):
    response = client_for(person.user).patch("/api/v1/users/me", {"phone": ""}, format="json")
    assert response.status_code == 200 and response.json()["phone"] == ""


def test_unknown_and_read_only_fields_answer_400_naming_each(client_for, person):
    response = client_for(person.user).patch(
        "/api/v1/users/me", {"status": "ACTIVE", "email": "x@example.com", "favourite_colour": "blue",
                             "first_name": "Ok"}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields == {"status": ["This field is read-only."], "email": ["This field is read-only."],
                      "favourite_colour": ["Unknown field."]}
    person.refresh_from_db()
    assert (person.status, person.first_name) == (ProfileStatus.REGISTERED, "Ada")


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"nationality": "ZZ"}, "nationality"), ({"phone": "12345"}, "phone"), ({"first_name": ""}, "first_name"),
     ({"date_of_birth": "2999-12-31"}, "date_of_birth")],
)
def test_bad_values_answer_400_naming_the_field(client_for, person, changes, field):
    response = client_for(person.user).patch("/api/v1/users/me", changes, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


@pytest.mark.parametrize("status", [ProfileStatus.PENDING_KYC_REVIEW, ProfileStatus.APPROVED_PENDING_ONCHAIN,
                                    ProfileStatus.ACTIVE, ProfileStatus.FROZEN])
def test_identity_fields_are_frozen_once_kyc_is_submitted(client_for, person, status):
    UserProfile.objects.filter(pk=person.pk).update(status=status)
    response = client_for(person.user).patch(
        "/api/v1/users/me", {"first_name": "Changed", "nationality": "DE", "last_name": "Obi"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "identity_frozen"
    # last_name is sent unchanged, so only the two real changes are named.
    assert set(response.json()["error"]["fields"]) == {"first_name", "nationality"}
    person.refresh_from_db()
    assert (person.first_name, person.nationality) == ("Ada", "NG")


def test_phone_stays_editable_after_kyc(client_for, person):
    UserProfile.objects.filter(pk=person.pk).update(status=ProfileStatus.PENDING_KYC_REVIEW)
    response = client_for(person.user).patch("/api/v1/users/me", {"phone": "+4915112345678"}, format="json")
    assert response.status_code == 200 and response.json()["phone"] == "+4915112345678"


def test_a_rejected_applicant_may_correct_identity_fields_before_resubmitting(client_for, person):
    UserProfile.objects.filter(pk=person.pk).update(status=ProfileStatus.KYC_REJECTED)
    response = client_for(person.user).patch("/api/v1/users/me", {"last_name": "Obi-Nwosu"}, format="json")
    assert response.status_code == 200 and response.json()["last_name"] == "Obi-Nwosu"
