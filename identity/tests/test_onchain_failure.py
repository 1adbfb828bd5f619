"""A CREATE_USER the chain refuses sends the person back to review, visibly (profile API and the admin queue);
the biometric-uniqueness check of approvals is serialised by a lock on the hash."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, connections, transaction
from django.utils import timezone

from gxbackend.exceptions import Conflict
from identity import services
from identity.models import KycStatus, KycSubmission, ProfileStatus, User
from identity.tests.conftest import kyc_body, sha
from outbox.models import CommandStatus, CommandType, OutboxCommand
from outbox.services import outbox_claim, outbox_enqueue, outbox_record_failed, outbox_record_retry
from outbox.tests.conftest import devnet, fabric, fast_outbox, new_user_id  # noqa: F401 - fixtures
from outbox.tests.test_submitter import run

QUEUE = "/admin/identity/kycsubmission/"


def submit(profile, **overrides) -> KycSubmission:
    body = kyc_body(**overrides)
    body["expiry_date"] = date.fromisoformat(body["expiry_date"])
    return services.kyc_submit(profile=profile, **body)


def create_user_command(profile) -> OutboxCommand:
    return OutboxCommand.objects.get(command_type=CommandType.CREATE_USER, aggregate_id=profile.pk.hex,
                                     status__in=[CommandStatus.PENDING, CommandStatus.SUBMITTED])


def claimed(command: OutboxCommand, worker: str = "w1") -> OutboxCommand:
    OutboxCommand.objects.filter(id=command.id).update(next_attempt_at=timezone.now(), locked_until=None)
    assert command.id in outbox_claim(worker_id=worker, limit=100)
    return command


@pytest.fixture
def reviewer(make_person) -> User:
    reviewer = make_person(staff=True).user
    reviewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_kycsubmission",
                                                                            "change_kycsubmission"]))
    return User.objects.get(pk=reviewer.pk)


@pytest.mark.django_db
@pytest.mark.usefixtures("fast_outbox")
def test_a_create_user_the_chaincode_refuses_puts_the_person_back_in_review_with_the_chains_reason(
        fabric, person, reviewer, client_for, client):  # noqa: F811 - pytest fixtures
    biometric = sha("the same finger")
    # Someone else already holds this biometric hash on the chain (registered by another path, not approved here).
    elsewhere = new_user_id()
    with transaction.atomic():
        other = outbox_enqueue(command_type=CommandType.CREATE_USER, aggregate_id=elsewhere, payload={
            "user_id": elsewhere, "biometric_hash": biometric, "nationality": "DE", "age": 40})
    assert run(other, fabric) == "committed"

    submission = submit(person, biometric_hash=biometric)
    services.kyc_approve(submission_id=submission.pk, reviewer=reviewer)
    command = create_user_command(person)
    assert run(command, fabric) == "failed"  # the submitter records the chaincode's [BIOMETRIC_EXISTS]

    person.refresh_from_db()
    submission.refresh_from_db()
    assert person.status == ProfileStatus.PENDING_KYC_REVIEW  # not stranded in APPROVED_PENDING_ONCHAIN
    assert person.onchain_error.startswith("[BIOMETRIC_EXISTS]")
    assert submission.status == KycStatus.PENDING
    assert "BIOMETRIC_EXISTS" in submission.onchain_error and str(command.command_id) in submission.onchain_error

    # The person sees it on their profile.
    me = client_for(person.user).get("/api/v1/users/me").json()
    assert me["status"] == "PENDING_KYC_REVIEW" and me["onchain_error"].startswith("[BIOMETRIC_EXISTS]")
    # The reviewers see it in their queue (pending by default), with the chain's answer.
    client.force_login(reviewer)
    page = client.get(QUEUE).content.decode()
    assert person.user.email in page and "BIOMETRIC_EXISTS" in page

    # And decide again: a rejection with a reason lets the person correct and resubmit.
    services.kyc_reject(submission_id=submission.pk, reviewer=reviewer, reason="Duplicate identity.")
    person.refresh_from_db()
    assert (person.status, person.onchain_error) == (ProfileStatus.KYC_REJECTED, "")


@pytest.mark.django_db
def test_a_dead_lettered_create_user_goes_back_to_review_and_a_new_approval_enqueues_a_new_command(
        person, reviewer, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    submission = submit(person)
    services.kyc_approve(submission_id=submission.pk, reviewer=reviewer)
    first = claimed(create_user_command(person))
    assert outbox_record_retry(command_id=first.id, worker_id="w1", error="endorse: UNAVAILABLE peer down",
                               new_transaction=True) is False  # out of attempts: dead-lettered
    person.refresh_from_db()
    submission.refresh_from_db()
    assert person.status == ProfileStatus.PENDING_KYC_REVIEW
    assert person.onchain_error == services.ONCHAIN_UNAVAILABLE_MESSAGE  # no infrastructure detail for the person
    assert submission.status == KycStatus.PENDING
    assert "UNAVAILABLE peer down" in submission.onchain_error and "dead-lettered" in submission.onchain_error

    services.kyc_approve(submission_id=submission.pk, reviewer=reviewer)
    person.refresh_from_db()
    second = create_user_command(person)
    assert second.id != first.id and second.idempotency_key != first.idempotency_key
    assert (person.status, person.onchain_error) == (ProfileStatus.APPROVED_PENDING_ONCHAIN, "")
    submission.refresh_from_db()
    assert (submission.status, submission.onchain_error) == (KycStatus.APPROVED, "")


@pytest.mark.django_db
def test_user_exists_and_a_person_who_moved_on_are_left_as_they_are(make_person, reviewer):
    on_chain, active = make_person(), make_person()
    for profile in (on_chain, active):
        services.kyc_approve(submission_id=submit(profile).pk, reviewer=reviewer)
    # USER_EXISTS: the person is on the chain already; the projector activates the profile from UserCreated.
    command = claimed(create_user_command(on_chain))
    outbox_record_failed(command_id=command.id, worker_id="w1", error="[USER_EXISTS] user exists",
                         chaincode_code="USER_EXISTS")
    on_chain.refresh_from_db()
    assert on_chain.status == ProfileStatus.APPROVED_PENDING_ONCHAIN
    # A profile the projector made ACTIVE meanwhile stays ACTIVE.
    type(active).objects.filter(pk=active.pk).update(status=ProfileStatus.ACTIVE)
    command = claimed(create_user_command(active))
    outbox_record_failed(command_id=command.id, worker_id="w1", error="[INVALID_ARGUMENT] x",
                         chaincode_code="INVALID_ARGUMENT")
    active.refresh_from_db()
    assert (active.status, active.onchain_error) == (ProfileStatus.ACTIVE, "")
    assert KycSubmission.objects.filter(profile=active, status=KycStatus.APPROVED).exists()


def _waiting_on_locks(expected: int, outcomes: dict[int, str], timeout: float = 30.0) -> None:
    """Waits until ``expected`` other sessions of this database wait on a lock (bounded)."""
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline and len(outcomes) < expected:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # in a transaction the view is a snapshot
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0] >= expected:
                return
            time.sleep(0.02)
    pytest.fail(f"{expected} approvals never waited on their locks together: {outcomes}")


@pytest.mark.django_db(transaction=True)
def test_two_approvals_of_one_biometric_hash_at_once_let_only_one_through(make_person, reviewer):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    biometric = sha("twins")
    submissions = [submit(make_person(), biometric_hash=biometric) for _ in range(2)]
    outcomes: dict[int, str] = {}

    def approve(n: int) -> None:
        try:
            services.kyc_approve(submission_id=submissions[n].pk, reviewer=reviewer)
            outcomes[n] = "approved"
        except Conflict as exc:
            outcomes[n] = exc.code
        except Exception as exc:  # reported by the assertion below
            outcomes[n] = repr(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=approve, args=(n,)) for n in range(2)]
    # Hold both approvals at the outbox insert, after their uniqueness checks, so that they really overlap:
    # without a lock on the hash both checks would run before either approval commits.
    with connections["default"].cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(f"LOCK TABLE {OutboxCommand._meta.db_table} IN EXCLUSIVE MODE")
        try:
            for thread in threads:
                thread.start()
            _waiting_on_locks(2, outcomes)
        finally:
            cursor.execute("COMMIT")
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert sorted(outcomes.values()) == ["approved", "biometric_exists"], outcomes
    assert KycSubmission.objects.filter(biometric_hash=biometric, status=KycStatus.APPROVED).count() == 1
    assert OutboxCommand.objects.filter(command_type=CommandType.CREATE_USER).count() == 1


def test_the_profile_shows_no_chain_error_normally(client_for, person):
    body = client_for(person.user).get("/api/v1/users/me").json()
    assert body["onchain_error"] == ""
