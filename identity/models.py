"""Users, their profiles and KYC submissions.

``User`` is the login (email + password); ``UserProfile`` shares its UUID primary key and is the read model the
API serves (``id`` in every response is this UUID). The profile's ``status`` follows docs/DESIGN.md §2:
REGISTERED → PENDING_KYC_REVIEW → APPROVED_PENDING_ONCHAIN → ACTIVE ↔ FROZEN, or KYC_REJECTED (may resubmit).
When the chain refuses the approved person's CREATE_USER, the profile goes back to PENDING_KYC_REVIEW and the
submission back to the reviewers' queue (PENDING), both carrying the chain's reason in ``onchain_error``.

One person, one identity: ``User.email_canonical`` holds :func:`identity.emails.email_key` of the email, unique,
kept in step by ``save()`` and the manager's ``bulk_create``; every lookup by email goes through it.
``User.session_version`` is copied into every token; a password change or a deactivation bumps it, which
revokes every token issued before (``identity.authentication``, ``identity.services.auth_refresh``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models

from identity.emails import canonical_email, email_key, validate_identity_email


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        if not email:
            raise ValueError("email is required")
        user = self.model(email=canonical_email(email), **extra)  # InvalidEmail is a ValueError
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        # A unique column: at most one row, whatever the spelling (never MultipleObjectsReturned).
        return self.get(email_canonical=email_key(username or ""))

    def bulk_create(self, objs, *args: object, **kwargs: object) -> list[User]:
        objs = list(objs)
        for user in objs:  # save() is skipped by bulk_create; the key must not be
            user.email_canonical = email_key(user.email)
        return super().bulk_create(objs, *args, **kwargs)


class User(AbstractBaseUser, PermissionsMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, unique=True, validators=[validate_identity_email],
                              help_text="identity.emails.canonical_email form: lower case, IDNA domain")
    email_canonical = models.TextField(unique=True, editable=False,
                                       help_text="identity.emails.email_key(email): every lookup by email uses it")
    session_version = models.PositiveIntegerField(
        default=0, editable=False,
        help_text="copied into every token; bumped by a password change or a deactivation, revoking them all")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(auto_now_add=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    # is_active as loaded from the database (None for a new row): save() revokes tokens when it goes False.
    _stored_is_active: bool | None = None

    def __str__(self) -> str:
        return self.email

    @classmethod
    def from_db(cls, db: str | None, field_names: list[str], values: list[object]) -> User:
        user = super().from_db(db, field_names, values)
        user._stored_is_active = user.__dict__.get("is_active")  # not a deferred load
        return user

    def save(self, *args: object, **kwargs: object) -> None:
        """Keeps ``email_canonical`` in step; a password change (``set_password``, not a hash upgrade at login,
        which Django saves with ``_password`` cleared) or a deactivation bumps ``session_version``."""
        changed = {"email_canonical"}
        self.email_canonical = email_key(self.email)
        revoke = self._password is not None or (self._stored_is_active and not self.is_active)
        if revoke and not self._state.adding:  # a new user has no session to end
            self.session_version += 1
            changed.add("session_version")
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, *changed}
        super().save(*args, **kwargs)
        self._stored_is_active = self.is_active

    @property
    def role(self) -> str:
        return "admin" if self.is_staff else "user"


class ProfileStatus(models.TextChoices):
    REGISTERED = "REGISTERED"
    PENDING_KYC_REVIEW = "PENDING_KYC_REVIEW"
    APPROVED_PENDING_ONCHAIN = "APPROVED_PENDING_ONCHAIN"
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    KYC_REJECTED = "KYC_REJECTED"


class UserProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="profile")
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField()
    nationality = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, upper case")
    phone = models.CharField(max_length=16, blank=True, default="", help_text="E.164")
    status = models.CharField(max_length=32, choices=ProfileStatus.choices, default=ProfileStatus.REGISTERED,
                              db_index=True)
    onchain_registered_at = models.DateTimeField(null=True, blank=True)
    onchain_error = models.CharField(
        max_length=500, blank=True, default="",
        help_text="why the chain refused the last on-chain registration (CREATE_USER); empty otherwise")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name} <{self.user.email}>"

    @property
    def id(self):
        return self.user_id

    @property
    def onchain_user_id(self) -> str:
        """The chaincode's userID: the UUID in hex, 32 characters, no dashes (docs/CHAINCODE.md)."""
        return self.user_id.hex


class KycStatus(models.TextChoices):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class DocumentType(models.TextChoices):
    PASSPORT = "PASSPORT"
    NATIONAL_ID = "NATIONAL_ID"
    DRIVERS_LICENSE = "DRIVERS_LICENSE"


class KycSubmission(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    profile = models.ForeignKey(UserProfile, on_delete=models.CASCADE, related_name="kyc_submissions")
    document_type = models.CharField(max_length=20, choices=DocumentType.choices)
    document_number = models.CharField(max_length=64)
    issuing_country = models.CharField(max_length=2)
    expiry_date = models.DateField()
    document_sha256 = models.CharField(max_length=64)
    biometric_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=KycStatus.choices, default=KycStatus.PENDING)
    submitted_at = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="kyc_reviews")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True, default="")
    onchain_error = models.TextField(
        blank=True, default="",
        help_text="set when the chain refused this approved submission's CREATE_USER: it is back for review")

    class Meta:
        verbose_name = "KYC submission"
        ordering = ["submitted_at"]
        constraints = [
            # One pending submission per profile, enforced by the database (the API answers 409).
            models.UniqueConstraint(fields=["profile"], condition=models.Q(status="PENDING"),
                                    name="identity_kyc_one_pending_per_profile"),
        ]
        indexes = [models.Index(fields=["status", "submitted_at"], name="identity_kyc_queue_idx")]

    def __str__(self) -> str:
        return f"KYC {self.document_type} of {self.profile_id} ({self.status})"
