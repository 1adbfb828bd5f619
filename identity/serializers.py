"""Input serializers validate request bodies; output serializers render the field names of docs/DESIGN.md §2."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from django.core.validators import RegexValidator
from django.utils import timezone
from rest_framework import serializers

from gxbackend.text import validate_plain_text
from identity.countries import ISO_3166_ALPHA2
from identity.emails import MAX_LENGTH as MAX_EMAIL_LENGTH
from identity.emails import InvalidEmail, canonical_email
from identity.models import DocumentType, KycSubmission, ProfileStatus, UserProfile

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
DOCUMENT_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{0,62}[A-Za-z0-9]$|^[A-Za-z0-9]$")
MAX_AGE_YEARS = 150  # CreateUser's age argument is 0–150 (docs/CHAINCODE.md)


def age_on(born: date, today: date) -> int:
    """Completed years between ``born`` and ``today``."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class StrictInputSerializer(serializers.Serializer):
    """Refuses fields it does not declare: a typo must not be silently ignored.

    ``read_only_names`` are fields clients see in responses but may not send; they are reported as read-only
    rather than unknown.
    """

    read_only_names: frozenset[str] = frozenset()
    refuses_unknown_fields = True  # the OpenAPI schema says additionalProperties: false (gxbackend.schema)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        if isinstance(data, dict):
            for name in data:
                if name in self.fields:
                    continue
                if name in self.read_only_names:
                    errors[name] = ["This field is read-only."]
                else:
                    errors[name] = ["Unknown field."]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                errors = {**errors, **exc.detail}
            else:
                raise
        if errors:
            raise serializers.ValidationError(errors)
        return value


def validate_country(value: str) -> str:
    code = value.strip().upper()
    if code not in ISO_3166_ALPHA2:
        raise serializers.ValidationError("Must be an ISO 3166-1 alpha-2 country code, e.g. NG or DE.")
    return code


def validate_phone(value: str) -> str:
    if value and not E164.match(value):
        raise serializers.ValidationError("Must be an E.164 number: '+', country code and number, 15 digits at most.")
    return value


def validate_date_of_birth(value: date) -> date:
    today = timezone.localdate()
    if value >= today:
        raise serializers.ValidationError("Must be in the past.")
    if age_on(value, today) > MAX_AGE_YEARS:
        raise serializers.ValidationError(f"Must be less than {MAX_AGE_YEARS} years ago.")
    return value


# A RegexValidator rather than a function: the OpenAPI schema then carries the pattern (drf-spectacular).
validate_sha256 = RegexValidator(SHA256_HEX, "Must be a SHA-256 digest: 64 lowercase hexadecimal characters.")


class EmailAddressField(serializers.EmailField):
    """An email address, as ``identity.emails.canonical_email`` accepts and writes it; a refusal is a 400 naming
    the field with the reason (quoted, invisible characters, non-ASCII mailbox, mixed-script domain…)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_EMAIL_LENGTH)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        try:
            return canonical_email(super().to_internal_value(data))
        except InvalidEmail as exc:
            raise serializers.ValidationError(str(exc)) from exc


class NameField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=100, trim_whitespace=True, allow_blank=False, validators=[validate_plain_text],
                         **kwargs)


class ProfileOutputSerializer(serializers.Serializer):
    # Declared field by field rather than as a ModelSerializer: the profile is rendered on every GET and
    # ModelSerializer rebuilds its fields from the model on each instantiation (measured by bench/api.py).
    id = serializers.UUIDField(source="user_id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    first_name = serializers.CharField(read_only=True)
    last_name = serializers.CharField(read_only=True)
    date_of_birth = serializers.DateField(read_only=True)
    nationality = serializers.CharField(read_only=True, help_text="ISO 3166-1 alpha-2")
    phone = serializers.CharField(read_only=True, help_text="E.164, or empty")
    status = serializers.ChoiceField(choices=ProfileStatus.choices, read_only=True)
    onchain_error = serializers.CharField(
        read_only=True, help_text="Why the chain refused the on-chain registration; the KYC submission is then "
                                  "back with the reviewers (status PENDING_KYC_REVIEW). Empty otherwise.")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class RegisterInputSerializer(StrictInputSerializer):
    email = EmailAddressField(help_text="Stored lower-cased with the domain in IDNA (punycode) form; quoted, "
                                        "non-ASCII mailbox names and mixed-script domains are refused.")
    password = serializers.CharField(max_length=256, trim_whitespace=False, write_only=True,
                                     style={"input_type": "password"})
    first_name = NameField()
    last_name = NameField()
    date_of_birth = serializers.DateField(validators=[validate_date_of_birth])
    nationality = serializers.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    phone = serializers.CharField(max_length=16, required=False, allow_blank=True, default="",
                                  help_text="E.164, e.g. +2348012345678")

    def validate_nationality(self, value: str) -> str:
        return validate_country(value)

    def validate_phone(self, value: str) -> str:
        return validate_phone(value)


class ProfileUpdateInputSerializer(StrictInputSerializer):
    read_only_names = frozenset({"id", "email", "status", "onchain_error", "created_at", "updated_at", "password"})

    first_name = NameField(required=False)
    last_name = NameField(required=False)
    date_of_birth = serializers.DateField(required=False, validators=[validate_date_of_birth])
    nationality = serializers.CharField(max_length=2, required=False, help_text="ISO 3166-1 alpha-2")
    phone = serializers.CharField(max_length=16, required=False, allow_blank=True, help_text="E.164")

    def validate_nationality(self, value: str) -> str:
        return validate_country(value)

    def validate_phone(self, value: str) -> str:
        return validate_phone(value)


class LoginInputSerializer(StrictInputSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=256, trim_whitespace=False, write_only=True,
                                     style={"input_type": "password"})


class LoginOutputSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    user = ProfileOutputSerializer(allow_null=True, help_text="null for staff accounts without a profile")


class RefreshInputSerializer(StrictInputSerializer):
    refresh = serializers.CharField()


class RefreshOutputSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class KycSubmitInputSerializer(StrictInputSerializer):
    document_type = serializers.ChoiceField(choices=DocumentType.choices)
    document_number = serializers.CharField(max_length=64)
    issuing_country = serializers.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    expiry_date = serializers.DateField()
    # Not trimmed: a digest is exactly its pattern, as the schema says.
    document_sha256 = serializers.CharField(max_length=64, validators=[validate_sha256], trim_whitespace=False,
                                            help_text="SHA-256 of the document file, 64 lowercase hex")
    biometric_hash = serializers.CharField(max_length=64, validators=[validate_sha256], trim_whitespace=False,
                                           help_text="SHA-256 biometric hash, 64 lowercase hex")

    def validate_document_number(self, value: str) -> str:
        if not DOCUMENT_NUMBER.match(value):
            raise serializers.ValidationError("Letters, digits, spaces and hyphens only.")
        return value

    def validate_issuing_country(self, value: str) -> str:
        return validate_country(value)

    def validate_expiry_date(self, value: date) -> date:
        if value <= timezone.localdate():
            raise serializers.ValidationError("The document has expired: the expiry date must be in the future.")
        return value


class KycSubmitOutputSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="profile.status", help_text="the profile's status: PENDING_KYC_REVIEW")

    class Meta:
        model = KycSubmission
        fields = ["id", "status", "submitted_at"]
        read_only_fields = fields


# One bound instance renders every profile: DRF deep-copies and binds a serializer's fields on each
# instantiation, which was the largest cost of GET /users/me beyond the bare view (bench/api.py).
# ``to_representation`` keeps no state on the instance, so sharing it between threads is safe; never call
# ``.data`` or ``is_valid`` on it.
_PROFILE_RENDERER = ProfileOutputSerializer()


def render_profile(profile: UserProfile) -> dict[str, Any]:
    """The profile as the API returns it (``ProfileOutputSerializer``'s fields)."""
    return _PROFILE_RENDERER.to_representation(profile)
