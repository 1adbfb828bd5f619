"""Writes of identity: registration, login/logout, profile edits, KYC submission and review.

Every function is keyword-only and runs its writes in one ``transaction.atomic()``; views and the admin call
these and never write the ORM themselves (STYLE.md conventions 6–8).
"""

from __future__ import annotations

import functools
import secrets
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import Throttled
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.tokens import RefreshToken

from gxbackend.exceptions import Conflict, DomainError, NotFound, ValidationFailed
from identity import lockout
from identity.models import KycStatus, KycSubmission, ProfileStatus, User, UserProfile
from identity.selectors import user_get_for_login
from identity.serializers import age_on
from identity.tokens import tokens_for
from outbox.models import CommandType
from outbox.services import outbox_enqueue

# Identity fields are frozen while a submission is under review and after approval (what the reviewer saw is
# what goes on chain); a rejected applicant may correct them before resubmitting.
IDENTITY_FIELDS = ("first_name", "last_name", "date_of_birth", "nationality")
IDENTITY_EDITABLE_STATUSES = (ProfileStatus.REGISTERED, ProfileStatus.KYC_REJECTED)
KYC_SUBMITTABLE_STATUSES = (ProfileStatus.REGISTERED, ProfileStatus.KYC_REJECTED)


class InvalidCredentials(DomainError):
    status_code = 401
    code = "invalid_credentials"


class LoginLocked(Throttled):
    """429 with ``Retry-After`` (rendered by the one error handler, as DRF's throttling is)."""

    default_code = "login_locked"

    def __init__(self, retry_after: int) -> None:
        super().__init__(wait=retry_after, detail="Too many failed logins for this email from your address.")


# --- Registration ---------------------------------------------------------------------------------------

def user_register(
    *, email: str, password: str, first_name: str, last_name: str, date_of_birth: date, nationality: str,
    phone: str = "",
) -> UserProfile:
    """Creates the login and its profile (status REGISTERED); 400 on a weak password, 409 on a taken email."""
    try:
        # The similarity validator compares the password with the person's own data.
        candidate = User(email=email)
        candidate.first_name, candidate.last_name = first_name, last_name  # not User fields; the validator reads them
        validate_password(password, candidate)
    except DjangoValidationError as exc:
        raise ValidationFailed("The password is not strong enough.", fields={"password": list(exc.messages)}) \
            from exc
    email = email.strip().lower()
    taken = Conflict("A user with this email already exists.", code="email_taken",
                     fields={"email": ["A user with this email already exists."]})
    if User.objects.filter(email=email).exists():
        raise taken
    # Hash outside the transaction: Argon2 takes ~150 ms and needs no row lock.
    password_hash = make_password(password)
    try:
        with transaction.atomic():
            user = User.objects.create(email=email, password=password_hash)
            profile = UserProfile.objects.create(
                user=user, first_name=first_name, last_name=last_name, date_of_birth=date_of_birth,
                nationality=nationality, phone=phone,
            )
    except IntegrityError as exc:  # a concurrent registration of the same email won the race
        raise taken from exc
    return profile


# --- Login, refresh, logout -----------------------------------------------------------------------------

@functools.cache
def _dummy_password_hash() -> str:
    """A hash made with the current default hasher, verified for unknown emails so they cost what a wrong
    password costs (same answer, same timing class)."""
    return make_password(secrets.token_urlsafe(24))


@dataclass(frozen=True)
class LoginResult:
    user: User
    profile: UserProfile | None
    access: str
    refresh: str


def auth_login(*, email: str, password: str, client_ip: str) -> LoginResult:
    """Checks the credentials under the (email, IP) lockout; returns a fresh token pair.

    Unknown email, wrong password and inactive account all answer 401 ``invalid_credentials`` after one
    password-hash verification each. A locked (email, IP) answers 429 without verifying anything.
    """
    retry_after, failures_on_record = lockout.check(email=email, ip=client_ip)
    if retry_after:
        raise LoginLocked(retry_after)
    user = user_get_for_login(email=email)
    if user is None:
        check_password(password, _dummy_password_hash())
        valid = False
    else:
        valid = user.check_password(password) and user.is_active
    if not valid:
        lockout.record_failure(email=email, ip=client_ip)
        raise InvalidCredentials("The email or the password is wrong.")
    if failures_on_record:  # the common case (no earlier failure) costs no second cache round trip
        lockout.record_success(email=email, ip=client_ip)
    tokens = tokens_for(user)
    return LoginResult(user=user, profile=getattr(user, "profile", None), **tokens)


def auth_refresh(*, refresh: str) -> dict[str, str]:
    """A new access token and, refresh tokens rotating, a new refresh token; the used one is blacklisted."""
    serializer = TokenRefreshSerializer(data={"refresh": refresh})
    try:
        serializer.is_valid(raise_exception=True)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc
    return serializer.validated_data


def auth_logout(*, refresh: str) -> None:
    """Revokes a refresh token (blacklist): it can no longer be refreshed. Access tokens expire on their own."""
    try:
        RefreshToken(refresh).blacklist()
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc


# --- Profile --------------------------------------------------------------------------------------------

def profile_update(*, profile: UserProfile, changes: dict[str, Any]) -> UserProfile:
    """Applies validated field changes; identity fields are refused (400 naming them) once KYC is submitted."""
    with transaction.atomic():
        profile = UserProfile.objects.select_for_update().select_related("user").get(pk=profile.pk)
        frozen = [name for name in IDENTITY_FIELDS
                  if name in changes and changes[name] != getattr(profile, name)]
        if frozen and profile.status not in IDENTITY_EDITABLE_STATUSES:
            raise ValidationFailed(
                "Identity fields cannot be changed once KYC has been submitted.", code="identity_frozen",
                fields={name: ["Read-only once KYC has been submitted."] for name in frozen},
            )
        for name, value in changes.items():
            setattr(profile, name, value)
        if changes:
            profile.save(update_fields=[*changes, "updated_at"])
    return profile


# --- KYC ------------------------------------------------------------------------------------------------

def kyc_submit(
    *, profile: UserProfile, document_type: str, document_number: str, issuing_country: str,
    expiry_date: date, document_sha256: str, biometric_hash: str,
) -> KycSubmission:
    """Records a submission (PENDING) and moves the profile to PENDING_KYC_REVIEW; 409 if one is pending or
    the profile is already past review."""
    pending = Conflict("A KYC submission is already pending review.", code="kyc_pending")
    try:
        with transaction.atomic():
            profile = UserProfile.objects.select_for_update().select_related("user").get(pk=profile.pk)
            if profile.status == ProfileStatus.PENDING_KYC_REVIEW:
                raise pending
            if profile.status not in KYC_SUBMITTABLE_STATUSES:
                raise Conflict(f"KYC is already approved for this profile (status {profile.status}).",
                               code="kyc_already_approved")
            submission = KycSubmission.objects.create(
                profile=profile, document_type=document_type, document_number=document_number,
                issuing_country=issuing_country, expiry_date=expiry_date, document_sha256=document_sha256,
                biometric_hash=biometric_hash,
            )
            profile.status = ProfileStatus.PENDING_KYC_REVIEW
            profile.save(update_fields=["status", "updated_at"])
    except IntegrityError as exc:  # identity_kyc_one_pending_per_profile: the database's word on it
        raise pending from exc
    submission.profile = profile
    return submission


def create_user_payload(*, profile: UserProfile, biometric_hash: str, today: date) -> dict[str, str]:
    """The arguments of IdentityContract:CreateUser(userID, biometricHash, nationality, age) (CHAINCODE.md)."""
    return {
        "user_id": profile.onchain_user_id,
        "biometric_hash": biometric_hash,
        "nationality": profile.nationality,
        "age": str(age_on(profile.date_of_birth, today)),
    }


def _lock_pending(submission_id: uuid.UUID) -> KycSubmission:
    submission = KycSubmission.objects.select_for_update().filter(pk=submission_id).first()
    if submission is None:
        raise NotFound("No such KYC submission.")
    if submission.status != KycStatus.PENDING:
        raise Conflict(f"This submission was already reviewed ({submission.status}).", code="kyc_already_reviewed")
    return submission


def kyc_approve(*, submission_id: uuid.UUID, reviewer: User, request_id: str = "") -> KycSubmission:
    """Approves a pending submission: in ONE transaction the submission is APPROVED (who/when), the profile
    becomes APPROVED_PENDING_ONCHAIN and a CREATE_USER command is enqueued for the chain."""
    with transaction.atomic():
        submission = _lock_pending(submission_id)
        profile = UserProfile.objects.select_for_update().get(pk=submission.profile_id)
        # The chaincode refuses a biometric hash another user holds ([BIOMETRIC_EXISTS]); say so before enqueueing.
        if KycSubmission.objects.filter(biometric_hash=submission.biometric_hash, status=KycStatus.APPROVED) \
                .exclude(profile_id=profile.pk).exists():
            raise Conflict("Another approved user has this biometric hash.", code="biometric_exists")
        now = timezone.now()
        submission.status = KycStatus.APPROVED
        submission.reviewed_by = reviewer
        submission.reviewed_at = now
        submission.save(update_fields=["status", "reviewed_by", "reviewed_at"])
        profile.status = ProfileStatus.APPROVED_PENDING_ONCHAIN
        profile.save(update_fields=["status", "updated_at"])
        outbox_enqueue(
            command_type=CommandType.CREATE_USER,
            aggregate_id=profile.onchain_user_id,
            payload=create_user_payload(profile=profile, biometric_hash=submission.biometric_hash,
                                        today=timezone.localdate(now)),
            # One CREATE_USER per person, whatever happens in the admin.
            idempotency_key=f"create-user:{profile.onchain_user_id}",
            request_id=request_id,
            requested_by=reviewer,
        )
    submission.profile = profile
    return submission


def kyc_reject(*, submission_id: uuid.UUID, reviewer: User, reason: str) -> KycSubmission:
    """Rejects a pending submission with a reason (required); the profile becomes KYC_REJECTED."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("A rejection needs a reason.", fields={"reason": ["This field is required."]})
    with transaction.atomic():
        submission = _lock_pending(submission_id)
        profile = UserProfile.objects.select_for_update().get(pk=submission.profile_id)
        submission.status = KycStatus.REJECTED
        submission.reviewed_by = reviewer
        submission.reviewed_at = timezone.now()
        submission.rejection_reason = reason
        submission.save(update_fields=["status", "reviewed_by", "reviewed_at", "rejection_reason"])
        profile.status = ProfileStatus.KYC_REJECTED
        profile.save(update_fields=["status", "updated_at"])
    submission.profile = profile
    return submission
