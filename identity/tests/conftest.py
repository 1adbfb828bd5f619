"""Builders for identity's tests: people registered through the service, tokens, KYC bodies."""

from __future__ import annotations

import hashlib
import itertools
from datetime import date, timedelta

import pytest
from django.utils import timezone

from identity.models import User, UserProfile
from identity.services import user_register
from identity.tokens import tokens_for

PASSWORD = "correct-horse-battery-9"
_counter = itertools.count(1)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def register_body(**overrides) -> dict:
    n = next(_counter)
    body = {
        "email": f"person{n}@example.com",
        "password": PASSWORD,
        "first_name": "Ada",
        "last_name": "Obi",
        "date_of_birth": "1990-05-17",
        "nationality": "NG",
        "phone": "+2348012345678",
    }
    body.update(overrides)
    return body


def kyc_body(**overrides) -> dict:
    n = next(_counter)
    body = {
        "document_type": "PASSPORT",
        "document_number": f"A{n:08d}",
        "issuing_country": "NG",
        "expiry_date": (timezone.localdate() + timedelta(days=365)).isoformat(),
        "document_sha256": sha(f"document {n}"),
        "biometric_hash": sha(f"biometric {n}"),
    }
    body.update(overrides)
    return body


@pytest.fixture
def make_person(db):
    """``make_person(staff=False, **profile fields)`` → a registered UserProfile (password ``PASSWORD``)."""

    def make(*, staff: bool = False, **overrides) -> UserProfile:
        body = register_body(**overrides)
        body["date_of_birth"] = date.fromisoformat(body["date_of_birth"])
        profile = user_register(**body)
        if staff:
            User.objects.filter(pk=profile.pk).update(is_staff=True)
            profile.user.refresh_from_db()
        return profile

    return make


@pytest.fixture
def person(make_person) -> UserProfile:
    return make_person()


def bearer(user: User) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {tokens_for(user)['access']}"}


@pytest.fixture
def client_for(api_client):
    """``client_for(user)`` → the API client carrying that user's fresh access token."""

    def authenticate(user: User):
        api_client.credentials(**bearer(user))
        return api_client

    return authenticate
