"""KYC review services: approval enqueues CREATE_USER in the same transaction; rejection needs a reason."""

from datetime import date

import pytest
from django.utils import timezone

from gxbackend.exceptions import Conflict, ValidationFailed
from identity import services
from identity.models import KycStatus, ProfileStatus
from identity.serializers import age_on
from identity.tests.conftest import kyc_body
from outbox.models import CommandStatus, CommandType, OutboxCommand

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(make_person):
    return make_person(staff=True).user


def submit(profile, **overrides):
    body = kyc_body(**overrides)
    body["expiry_date"] = date.fromisoformat(body["expiry_date"])
    return services.kyc_submit(profile=profile, **body)


def test_approval_moves_the_profile_on_and_enqueues_create_user(person, reviewer):
    submission = submit(person)
    approved = services.kyc_approve(submission_id=submission.pk, reviewer=reviewer, request_id="req-12345678")
    submission.refresh_from_db()
    person.refresh_from_db()
    assert (submission.status, submission.reviewed_by, person.status) == (
        KycStatus.APPROVED, reviewer, ProfileStatus.APPROVED_PENDING_ONCHAIN)
    assert submission.reviewed_at is not None
    command = OutboxCommand.objects.get()
    assert (command.command_type, command.status, command.aggregate_id) == (
        CommandType.CREATE_USER, CommandStatus.PENDING, person.pk.hex)
    assert command.payload == {"user_id": person.pk.hex, "biometric_hash": submission.biometric_hash,
                               "nationality": "NG", "age": str(age_on(date(1990, 5, 17), timezone.localdate()))}
    assert (command.requested_by, command.request_id) == (reviewer, "req-12345678")
    assert approved.command == command  # the caller learns which command to follow


def test_if_enqueueing_fails_nothing_of_the_approval_is_kept(person, reviewer, monkeypatch):
    submission = submit(person)

    def broken(**kwargs):
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(services, "outbox_enqueue", broken)
    with pytest.raises(RuntimeError):
        services.kyc_approve(submission_id=submission.pk, reviewer=reviewer)
    submission.refresh_from_db()
    person.refresh_from_db()
    assert (submission.status, submission.reviewed_by, person.status) == (
        KycStatus.PENDING, None, ProfileStatus.PENDING_KYC_REVIEW)
    assert not OutboxCommand.objects.exists()


def test_a_reviewed_submission_cannot_be_reviewed_again(person, reviewer):
    submission = submit(person)
    services.kyc_approve(submission_id=submission.pk, reviewer=reviewer)
    with pytest.raises(Conflict):
        services.kyc_approve(submission_id=submission.pk, reviewer=reviewer)
    with pytest.raises(Conflict):
        services.kyc_reject(submission_id=submission.pk, reviewer=reviewer, reason="late")
    assert OutboxCommand.objects.count() == 1


def test_rejection_needs_a_reason_and_records_it(person, reviewer):
    submission = submit(person)
    with pytest.raises(ValidationFailed):
        services.kyc_reject(submission_id=submission.pk, reviewer=reviewer, reason="   ")
    services.kyc_reject(submission_id=submission.pk, reviewer=reviewer, reason="Photo page unreadable")
    submission.refresh_from_db()
    person.refresh_from_db()
    assert (submission.status, submission.rejection_reason, submission.reviewed_by, person.status) == (
        KycStatus.REJECTED, "Photo page unreadable", reviewer, ProfileStatus.KYC_REJECTED)
    assert not OutboxCommand.objects.exists()


def test_a_biometric_hash_already_approved_for_someone_else_is_not_approved_again(make_person, reviewer):
    first, second = make_person(), make_person()
    services.kyc_approve(submission_id=submit(first, biometric_hash="a" * 64).pk, reviewer=reviewer)
    duplicate = submit(second, biometric_hash="a" * 64)
    with pytest.raises(Conflict):
        services.kyc_approve(submission_id=duplicate.pk, reviewer=reviewer)
    second.refresh_from_db()
    assert second.status == ProfileStatus.PENDING_KYC_REVIEW
    assert OutboxCommand.objects.count() == 1


@pytest.mark.parametrize(("born", "today", "age"), [
    (date(2000, 2, 29), date(2018, 2, 28), 17), (date(2000, 2, 29), date(2018, 3, 1), 18),
    (date(1990, 5, 17), date(2026, 5, 16), 35), (date(1990, 5, 17), date(2026, 5, 17), 36),
])
def test_age_counts_completed_years(born, today, age):
    assert age_on(born, today) == age
