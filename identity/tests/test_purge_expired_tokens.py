"""Expired refresh-token rows are deleted (outstanding and blacklisted), live ones and their blacklist kept."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from identity.tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def token(person, jti: str, expires_in: timedelta, *, blacklisted: bool = False) -> OutstandingToken:
    row = OutstandingToken.objects.create(user=person.user, jti=jti, token="-", created_at=timezone.now(),
                                          expires_at=timezone.now() + expires_in)
    if blacklisted:
        BlacklistedToken.objects.create(token=row)
    return row


def test_expired_rows_go_in_batches_and_live_ones_stay(person):
    for n in range(5):
        token(person, f"old-{n}", -timedelta(days=2), blacklisted=n % 2 == 0)
    token(person, "live", timedelta(hours=1))
    token(person, "live-revoked", timedelta(hours=1), blacklisted=True)
    token(person, "within-leeway", -timedelta(seconds=1), blacklisted=True)  # still verifies: keep its blacklist
    out = StringIO()
    call_command("purge_expired_tokens", "--batch-size", "2", stdout=out)
    assert "deleted 5 expired outstanding token(s) and 3 blacklist entr(ies)" in out.getvalue()
    assert set(OutstandingToken.objects.values_list("jti", flat=True)) == {"live", "live-revoked", "within-leeway"}
    assert set(BlacklistedToken.objects.values_list("token__jti", flat=True)) == {"live-revoked", "within-leeway"}


def test_a_dry_run_counts_and_deletes_nothing(person):
    token(person, "old", -timedelta(days=2), blacklisted=True)
    out = StringIO()
    call_command("purge_expired_tokens", "--dry-run", stdout=out)
    assert "1 expired token row(s) would be deleted" in out.getvalue()
    assert OutstandingToken.objects.count() == BlacklistedToken.objects.count() == 1


def test_a_batch_size_under_one_is_refused():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("purge_expired_tokens", "--batch-size", "0")


def test_the_login_tokens_of_a_real_session_are_purged_once_expired(api_client, person):
    api_client.post("/api/v1/auth/login", {"email": person.user.email, "password": PASSWORD}, format="json")
    assert OutstandingToken.objects.count() == 1
    OutstandingToken.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    call_command("purge_expired_tokens", stdout=StringIO())
    assert not OutstandingToken.objects.exists()
