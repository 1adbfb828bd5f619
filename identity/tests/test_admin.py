"""The KYC review admin through Django's test client: queue, search, approve, reject with a reason."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission

from identity.models import KycStatus, KycSubmission, ProfileStatus, User
from identity.tests.conftest import kyc_body
from identity.tests.test_services import submit
from outbox.models import CommandType, OutboxCommand

pytestmark = pytest.mark.django_db
QUEUE = "/admin/identity/kycsubmission/"


@pytest.fixture
def reviewer_client(client, make_person):
    reviewer = make_person(staff=True).user
    reviewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_kycsubmission",
                                                                            "change_kycsubmission"]))
    client.force_login(User.objects.get(pk=reviewer.pk))
    return client


def test_the_queue_shows_pending_submissions_by_default_and_filters_by_status(reviewer_client, make_person):
    pending, rejected = make_person(), make_person()
    submit(pending)
    KycSubmission.objects.create(profile=rejected, status=KycStatus.REJECTED,
                                 **{**kyc_body(), "expiry_date": "2099-01-01"})
    page = reviewer_client.get(QUEUE).content.decode()
    assert pending.user.email in page and rejected.user.email not in page
    page = reviewer_client.get(QUEUE, {"review": "REJECTED"}).content.decode()
    assert rejected.user.email in page and pending.user.email not in page
    page = reviewer_client.get(QUEUE, {"review": "all"}).content.decode()
    assert rejected.user.email in page and pending.user.email in page


def test_the_queue_is_searchable_by_email(reviewer_client, make_person):
    first, second = make_person(), make_person()
    submit(first)
    submit(second)
    page = reviewer_client.get(QUEUE, {"q": first.user.email.upper()}).content.decode()
    assert first.user.email in page and second.user.email not in page


def test_a_submission_page_shows_the_profile_beside_the_documents(reviewer_client, person):
    submission = submit(person)
    page = reviewer_client.get(f"{QUEUE}{submission.pk}/change/").content.decode()
    for text in (person.user.email, "1990", "NG", submission.document_number, submission.biometric_hash):
        assert text in page


def test_approve_action_approves_and_enqueues_create_user(reviewer_client, person):
    submission = submit(person)
    response = reviewer_client.post(QUEUE, {"action": "approve_selected", ACTION_CHECKBOX_NAME: [submission.pk],
                                            "index": 0}, follow=True)
    assert "Approved 1 submission" in response.content.decode()
    person.refresh_from_db()
    assert person.status == ProfileStatus.APPROVED_PENDING_ONCHAIN
    command = OutboxCommand.objects.get()
    assert command.command_type == CommandType.CREATE_USER
    # The reviewer is told which command to follow, and where an API client follows it.
    assert f"command <a href=\"/admin/outbox/outboxcommand/{command.pk}/change/\">{command.command_id}</a>" \
        in response.content.decode()
    assert f"status_url /api/v1/commands/{command.command_id}" in response.content.decode()
    assert LogEntry.objects.filter(object_id=str(submission.pk)).exists()


def test_reject_action_asks_for_a_reason_and_refuses_an_empty_one(reviewer_client, person):
    submission = submit(person)
    data = {"action": "reject_selected", ACTION_CHECKBOX_NAME: [submission.pk]}
    page = reviewer_client.post(QUEUE, {**data, "index": 0})
    assert page.status_code == 200 and 'name="reason"' in page.content.decode()
    empty = reviewer_client.post(QUEUE, {**data, "apply": "1", "reason": ""})
    assert empty.status_code == 200 and "This field is required" in empty.content.decode()
    submission.refresh_from_db()
    assert submission.status == KycStatus.PENDING
    done = reviewer_client.post(QUEUE, {**data, "apply": "1", "reason": "Expired document scan"}, follow=True)
    assert "Rejected 1 submission" in done.content.decode()
    submission.refresh_from_db()
    person.refresh_from_db()
    assert (submission.status, submission.rejection_reason, person.status) == (
        KycStatus.REJECTED, "Expired document scan", ProfileStatus.KYC_REJECTED)
    assert not OutboxCommand.objects.exists()


def test_staff_without_the_review_permission_cannot_see_the_queue(client, make_person):
    staff = make_person(staff=True).user
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(QUEUE).status_code == 403


def test_a_pending_submission_page_offers_approve_and_reject_and_approve_works_from_there(reviewer_client, person):
    submission = submit(person)
    page = reviewer_client.get(f"{QUEUE}{submission.pk}/change/").content.decode()
    assert 'name="kyc_approve"' in page and 'name="kyc_reject"' in page
    # The page's Approve button posts the queue's action for this one submission (no "index": a single form).
    response = reviewer_client.post(QUEUE, {"action": "approve_selected", ACTION_CHECKBOX_NAME: [submission.pk]},
                                    follow=True)
    assert "Approved 1 submission" in response.content.decode()
    submission.refresh_from_db()
    assert submission.status == KycStatus.APPROVED
    assert OutboxCommand.objects.filter(command_type=CommandType.CREATE_USER,
                                        aggregate_id=person.user_id.hex).count() == 1
    page = reviewer_client.get(f"{QUEUE}{submission.pk}/change/").content.decode()
    assert 'name="kyc_approve"' not in page, "a decided submission offers no decision"


def test_the_reject_button_asks_for_a_reason_first(reviewer_client, person):
    submission = submit(person)
    asked = reviewer_client.post(QUEUE, {"action": "reject_selected", ACTION_CHECKBOX_NAME: [submission.pk]})
    assert asked.status_code == 200 and b'name="reason"' in asked.content
    submission.refresh_from_db()
    assert submission.status == KycStatus.PENDING
