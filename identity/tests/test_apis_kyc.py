"""POST /api/v1/users/:id/kyc: 202 and PENDING_KYC_REVIEW, each bad field named, one pending at a time."""

from datetime import timedelta

import pytest
from django.utils import timezone

from identity.models import KycStatus, KycSubmission, ProfileStatus, UserProfile
from identity.tests.conftest import kyc_body

pytestmark = pytest.mark.django_db


def url(profile) -> str:
    return f"/api/v1/users/{profile.pk}/kyc"


def test_a_submission_is_accepted_and_the_profile_awaits_review(client_for, person):
    body = kyc_body()
    response = client_for(person.user).post(url(person), body, format="json")
    assert response.status_code == 202, response.content
    assert set(response.json()) == {"id", "status", "submitted_at"}
    assert response.json()["status"] == ProfileStatus.PENDING_KYC_REVIEW
    submission = KycSubmission.objects.get(pk=response.json()["id"])
    assert (submission.status, submission.biometric_hash, submission.document_number) == (
        KycStatus.PENDING, body["biometric_hash"], body["document_number"])
    person.refresh_from_db()
    assert person.status == ProfileStatus.PENDING_KYC_REVIEW


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"document_type": "LIBRARY_CARD"}, "document_type"),
        ({"document_number": ""}, "document_number"),
        ({"document_number": "A1;DROP"}, "document_number"),
        ({"issuing_country": "XX"}, "issuing_country"),
        ({"expiry_date": "2001-01-01"}, "expiry_date"),
        ({"expiry_date": timezone.localdate().isoformat()}, "expiry_date"),
        ({"expiry_date": "tomorrow"}, "expiry_date"),
        ({"document_sha256": "ab" * 31}, "document_sha256"),
        ({"document_sha256": "AB" * 32}, "document_sha256"),  # upper case is refused
        ({"biometric_hash": "g" * 64}, "biometric_hash"),
        ({"biometric_hash": "a" * 65}, "biometric_hash"),
        ({"selfie": "data:..."}, "selfie"),
    ],
)
def test_each_bad_field_answers_400_naming_it(client_for, person, overrides, field):
    response = client_for(person.user).post(url(person), kyc_body(**overrides), format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    assert not KycSubmission.objects.exists()
    person.refresh_from_db()
    assert person.status == ProfileStatus.REGISTERED


def test_a_second_submission_while_one_is_pending_answers_409(client_for, person):
    client = client_for(person.user)
    assert client.post(url(person), kyc_body(), format="json").status_code == 202
    response = client.post(url(person), kyc_body(), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "kyc_pending"
    assert KycSubmission.objects.filter(profile=person).count() == 1


def test_the_database_also_refuses_a_second_pending_submission(person):
    from django.db import IntegrityError, transaction

    KycSubmission.objects.create(profile=person, expiry_date=timezone.localdate() + timedelta(days=9),
                                 **{k: v for k, v in kyc_body().items() if k != "expiry_date"})
    with pytest.raises(IntegrityError), transaction.atomic():
        KycSubmission.objects.create(profile=person, expiry_date=timezone.localdate() + timedelta(days=9),
                                     **{k: v for k, v in kyc_body().items() if k != "expiry_date"})


def test_a_rejected_applicant_may_resubmit(client_for, person):
    UserProfile.objects.filter(pk=person.pk).update(status=ProfileStatus.KYC_REJECTED)
    response = client_for(person.user).post(url(person), kyc_body(), format="json")
    assert response.status_code == 202


@pytest.mark.parametrize("status", [ProfileStatus.APPROVED_PENDING_ONCHAIN, ProfileStatus.ACTIVE])
def test_an_approved_profile_cannot_submit_again(client_for, person, status):
    UserProfile.objects.filter(pk=person.pk).update(status=status)
    response = client_for(person.user).post(url(person), kyc_body(), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "kyc_already_approved"
