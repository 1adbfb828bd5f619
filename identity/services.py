"""Writes of identity: registration, login/logout, profile edits, KYC submission and review.

Every function is keyword-only and runs its writes in one ``transaction.atomic()``; views and the admin call
these and never write the ORM themselves (docs/STYLE.md conventions 6–8).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.exceptions import Throttled
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from gxbackend.exceptions import Conflict, DomainError, NotFound, ValidationFailed
from identity import lockout
from identity.emails import InvalidEmail, canonical_email, email_key
from identity.models import KycStatus, KycSubmission, ProfileStatus, User, UserProfile
from identity.selectors import user_get_by_email
from identity.serializers import age_on
from identity.tokens import session_is_current, token_user_id, tokens_for
from outbox.models import CommandType, OutboxCommand
from outbox.services import outbox_enqueue

logger = logging.getLogger("identity")

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
    """Creates the login and its profile (status REGISTERED); 400 on a refused email or a weak password, 409 when
    the email is already an identity (in any spelling that ``email_key`` folds together)."""
    try:
        email = canonical_email(email)
    except InvalidEmail as exc:
        raise ValidationFailed("The email address is not accepted.", fields={"email": [str(exc)]}) from exc
    try:
        # The similarity validator compares the password with the person's own data.
        candidate = User(email=email)
        candidate.first_name, candidate.last_name = first_name, last_name  # not User fields; the validator reads them
        validate_password(password, candidate)
    except DjangoValidationError as exc:
        raise ValidationFailed("The password is not strong enough.", fields={"password": list(exc.messages)}) \
            from exc
    taken = Conflict("A user with this email already exists.", code="email_taken",
                     fields={"email": ["A user with this email already exists."]})
    if User.objects.filter(email_canonical=email_key(email)).exists():
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
    except IntegrityError as exc:  # a concurrent registration of the same identity won the race
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


def auth_verify_credentials(*, email: str, password: str, client_ip: str | None) -> User:
    """The user these credentials belong to, checked under the (email, IP) lockout; the one implementation behind
    the API's login and the admin's (``identity.backends.EmailBackend``).

    Unknown email, wrong password and inactive account all raise ``InvalidCredentials`` after one password-hash
    verification each, and count towards the lockout. A locked (email, IP) raises ``LoginLocked`` without
    verifying anything. ``client_ip=None`` (a call without a request, e.g. a shell) skips the lockout.
    """
    failures_on_record = False
    if client_ip is not None:
        retry_after, failures_on_record = lockout.check(email=email, ip=client_ip)
        if retry_after:
            raise LoginLocked(retry_after)
    user = user_get_by_email(email=email)
    if user is None:
        check_password(password, _dummy_password_hash())
        valid = False
    else:
        valid = user.check_password(password) and user.is_active
    if not valid:
        if client_ip is not None:
            lockout.record_failure(email=email, ip=client_ip)
        raise InvalidCredentials("The email or the password is wrong.")
    if failures_on_record:  # the common case (no earlier failure) costs no second cache round trip
        lockout.record_success(email=email, ip=client_ip)
    return user


def auth_login(*, email: str, password: str, client_ip: str) -> LoginResult:
    """Checks the credentials (``auth_verify_credentials``); returns a fresh token pair."""
    user = auth_verify_credentials(email=email, password=password, client_ip=client_ip)
    tokens = tokens_for(user)
    return LoginResult(user=user, profile=getattr(user, "profile", None), **tokens)


def _refresh_token(raw: str) -> RefreshToken:
    try:
        token = RefreshToken(raw)  # signature, expiry, type, issuer/audience and the blacklist
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc
    token_user_id(token)  # a signed token without a well-formed user_id is a 401 here too, as on every view
    return token


def _claimed_user_id(token: RefreshToken) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(token.get(api_settings.USER_ID_CLAIM)))
    except ValueError:
        return None


def _token_user(token: RefreshToken) -> User:
    """The token's user as the database has it now; refused when gone, inactive or revoked since issue."""
    user_id = _claimed_user_id(token)
    if user_id is None:
        raise InvalidToken("Token contained no recognizable user identification")
    user = User.objects.filter(pk=user_id).first()
    if user is None or not user.is_active or not session_is_current(token, user):
        raise InvalidToken("The session has ended (password changed or account deactivated); log in again.")
    return user


def _blacklist(token: RefreshToken, raw: str) -> None:
    """Blacklists a verified refresh token; exactly one of two concurrent calls succeeds, the other gets 401.

    simplejwt's ``blacklist()`` would answer both, and reads the user without checking the claim's form.
    """
    def owner() -> User | None:  # only for a token issued before outstanding rows were recorded
        user_id = _claimed_user_id(token)
        return User.objects.filter(pk=user_id).first() if user_id else None

    with transaction.atomic():
        outstanding, _ = OutstandingToken.objects.get_or_create(
            jti=token[api_settings.JTI_CLAIM],
            defaults={"user": owner, "token": raw, "created_at": token.current_time,
                      "expires_at": datetime_from_epoch(token["exp"])})
        _, blacklisted_now = BlacklistedToken.objects.get_or_create(token=outstanding)
    if not blacklisted_now:
        raise InvalidToken("Token is blacklisted")


def auth_refresh(*, refresh: str) -> dict[str, str]:
    """A new pair for a valid refresh token, which is blacklisted (rotation): exactly one of two concurrent
    refreshes with the same token wins. The new tokens' claims (``role``, ``session_version``) are read from the
    database, so a demoted user's refreshed token carries no admin role; a deactivated user or a token issued
    before a password change gets 401."""
    token = _refresh_token(refresh)
    user = _token_user(token)
    _blacklist(token, refresh)
    return tokens_for(user)


def auth_logout(*, refresh: str) -> None:
    """Revokes a refresh token (blacklist): it can no longer be refreshed. Access tokens expire on their own."""
    _blacklist(_refresh_token(refresh), refresh)


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
    """The arguments of IdentityContract:CreateUser(userID, biometricHash, nationality, age) (docs/CHAINCODE.md)."""
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


def _lock_biometric_hash(biometric_hash: str) -> None:
    """Serialises approvals of one biometric hash until the caller's transaction ends (PostgreSQL advisory
    lock on the hash): two approvals at once cannot both find the hash free. SQLite (development) has one
    writer at a time anyway."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"gx-biometric:{biometric_hash}".encode()).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)])


def kyc_approve(*, submission_id: uuid.UUID, reviewer: User, request_id: str = "") -> KycSubmission:
    """Approves a pending submission: in ONE transaction the submission is APPROVED (who/when), the profile
    becomes APPROVED_PENDING_ONCHAIN and a CREATE_USER command is enqueued for the chain. The returned
    submission carries that command as ``command`` (to follow at ``GET /api/v1/commands/:id``).

    409 ``biometric_exists`` when another approved submission holds the biometric hash: the check runs under
    a lock on the hash, so of two approvals of one hash at once only the first passes.
    """
    with transaction.atomic():
        submission = _lock_pending(submission_id)
        profile = UserProfile.objects.select_for_update().get(pk=submission.profile_id)
        if profile.status != ProfileStatus.PENDING_KYC_REVIEW:
            raise Conflict(f"This profile is not waiting for review (status {profile.status}).",
                           code="profile_not_in_review")
        # The chaincode refuses a biometric hash another user holds ([BIOMETRIC_EXISTS]); say so before enqueueing.
        _lock_biometric_hash(submission.biometric_hash)
        if KycSubmission.objects.filter(biometric_hash=submission.biometric_hash, status=KycStatus.APPROVED) \
                .exclude(profile_id=profile.pk).exists():
            raise Conflict("Another approved user has this biometric hash.", code="biometric_exists")
        now = timezone.now()
        submission.status = KycStatus.APPROVED
        submission.reviewed_by = reviewer
        submission.reviewed_at = now
        submission.onchain_error = ""
        submission.save(update_fields=["status", "reviewed_by", "reviewed_at", "onchain_error"])
        profile.status = ProfileStatus.APPROVED_PENDING_ONCHAIN
        profile.onchain_error = ""
        profile.save(update_fields=["status", "onchain_error", "updated_at"])
        # One CREATE_USER per approval, whatever happens in the admin; a re-approval after the chain refused
        # the first one is a new command (the person's earlier ones are all FAILED: see the status check).
        earlier = OutboxCommand.objects.filter(command_type=CommandType.CREATE_USER,
                                               aggregate_id=profile.onchain_user_id).count()
        command = outbox_enqueue(
            command_type=CommandType.CREATE_USER,
            aggregate_id=profile.onchain_user_id,
            payload=create_user_payload(profile=profile, biometric_hash=submission.biometric_hash,
                                        today=timezone.localdate(now)),
            idempotency_key=f"create-user:{profile.onchain_user_id}" + (f":{earlier + 1}" if earlier else ""),
            request_id=request_id,
            requested_by=reviewer,
        )
    submission.profile = profile
    submission.command = command
    return submission


def kyc_reject(*, submission_id: uuid.UUID, reviewer: User, reason: str) -> KycSubmission:
    """Rejects a pending submission with a reason (required); the profile becomes KYC_REJECTED."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("A rejection needs a reason.", fields={"reason": ["This field is required."]})
    with transaction.atomic():
        submission = _lock_pending(submission_id)
        profile = UserProfile.objects.select_for_update().get(pk=submission.profile_id)
        if profile.status != ProfileStatus.PENDING_KYC_REVIEW:
            raise Conflict(f"This profile is not waiting for review (status {profile.status}).",
                           code="profile_not_in_review")
        submission.status = KycStatus.REJECTED
        submission.reviewed_by = reviewer
        submission.reviewed_at = timezone.now()
        submission.rejection_reason = reason
        submission.save(update_fields=["status", "reviewed_by", "reviewed_at", "rejection_reason"])
        profile.status = ProfileStatus.KYC_REJECTED
        profile.onchain_error = ""
        profile.save(update_fields=["status", "onchain_error", "updated_at"])
    submission.profile = profile
    return submission


# Shown to the person when the chain gave no business reason (the command was dead-lettered: an operator looks).
ONCHAIN_UNAVAILABLE_MESSAGE = "The registration could not be completed on the chain; your submission is back with " \
                              "the reviewers."


def kyc_onchain_registration_failed(command: OutboxCommand) -> None:
    """Reaction to a CREATE_USER command that became FAILED (registered in ``IdentityConfig.ready``; runs in the
    transaction that records the failure): the approved submission goes back to the reviewers' queue (PENDING)
    with the chain's answer in ``onchain_error``, and the profile back to PENDING_KYC_REVIEW with the reason
    the person may see (the chaincode's ``[CODE] message``, or a plain sentence for a dead letter).

    Nothing changes when the person has moved on (no longer APPROVED_PENDING_ONCHAIN, or a later CREATE_USER
    exists), nor for ``USER_EXISTS``: the person is on the chain, and the projector makes the profile ACTIVE
    from its ``UserCreated`` event.
    """
    if command.chaincode_code == "USER_EXISTS":
        logger.info("CREATE_USER %s: the user already exists on chain; the projector activates the profile",
                    command.command_id)
        return
    try:
        user_id = uuid.UUID(hex=command.aggregate_id)
    except ValueError:
        return
    # Submission, then profile: the order the review services lock them in.
    submission = KycSubmission.objects.select_for_update().filter(
        profile_id=user_id, status=KycStatus.APPROVED).order_by("-reviewed_at").first()
    profile = UserProfile.objects.select_for_update().filter(pk=user_id).first()
    if profile is None or profile.status != ProfileStatus.APPROVED_PENDING_ONCHAIN:
        return
    if OutboxCommand.objects.filter(command_type=CommandType.CREATE_USER, aggregate_id=command.aggregate_id,
                                    id__gt=command.id).exists():
        return  # re-approved since: the newer command decides
    if command.chaincode_code:
        public = command.error_message or f"[{command.chaincode_code}]"
    else:
        public = ONCHAIN_UNAVAILABLE_MESSAGE
    detail = command.error_message or "failed"
    if command.validation_code:
        detail = f"{detail} (validation code {command.validation_code})"
    if submission is not None:
        submission.status = KycStatus.PENDING
        submission.onchain_error = (f"The chain refused CREATE_USER {command.command_id}: {detail}"
                                    + (" [dead-lettered]" if command.dead_lettered else ""))[:4000]
        submission.save(update_fields=["status", "onchain_error"])
    profile.status = ProfileStatus.PENDING_KYC_REVIEW
    profile.onchain_error = public[:500]
    profile.save(update_fields=["status", "onchain_error", "updated_at"])
    logger.warning("CREATE_USER %s failed; KYC submission back in review: %s", command.command_id, detail,
                   extra={"command_id": str(command.command_id)})
