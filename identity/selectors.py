"""Reads of identity: who may see or edit which profile, the login lookup, the KYC review queue."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from gxbackend.exceptions import Forbidden, NotFound
from identity.emails import email_key
from identity.models import KycStatus, KycSubmission, User, UserProfile

_NOT_FOUND = "No such user."


def _own_profile(user: User) -> UserProfile:
    try:
        # Already loaded by ProfileJWTAuthentication (select_related): no query.
        return user.profile
    except UserProfile.DoesNotExist as exc:  # a staff account without a profile
        raise NotFound(_NOT_FOUND) from exc


def profile_get_visible(*, viewer: User, profile_id: uuid.UUID) -> UserProfile:
    """The profile ``viewer`` may read: their own, or any when staff.

    Another user's id answers exactly like a missing one (404), so ids cannot be probed.
    """
    if viewer.pk == profile_id:
        return _own_profile(viewer)
    if not viewer.is_staff:
        raise NotFound(_NOT_FOUND)
    profile = UserProfile.objects.select_related("user").filter(user_id=profile_id).first()
    if profile is None:
        raise NotFound(_NOT_FOUND)
    return profile


def profile_get_own(*, actor: User, profile_id: uuid.UUID) -> UserProfile:
    """The profile ``actor`` may change (edit, submit KYC for): only their own.

    Staff see other profiles (so 403 tells them nothing new) but change them only through the admin.
    """
    if actor.pk != profile_id:
        if actor.is_staff and UserProfile.objects.filter(user_id=profile_id).exists():
            raise Forbidden("Staff review other users' profiles in the admin; the API edits only your own.")
        raise NotFound(_NOT_FOUND)
    return _own_profile(actor)


def user_get_by_email(*, email: str) -> User | None:
    """The active-or-not user whose identity this email is (``email_key``: any case or aliasing spelling),
    profile joined; None when unknown. One row at most: the key is unique."""
    return User.objects.select_related("profile").filter(email_canonical=email_key(email)).first()


def kyc_review_queue() -> QuerySet[KycSubmission]:
    """Pending submissions, oldest first (the admin's default view; served by identity_kyc_queue_idx)."""
    return KycSubmission.objects.select_related("profile__user").filter(status=KycStatus.PENDING) \
        .order_by("submitted_at")
