"""Idempotency records are forgotten after the retention period, and only then."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from gxbackend.models import IdempotencyRecord

pytestmark = pytest.mark.django_db


def record(key: str, age_hours: float) -> IdempotencyRecord:
    row = IdempotencyRecord.objects.create(key=key, scope="POST api/v1/users", request_hash="0" * 64,
                                           response_status=201, response_body={}, completed_at=timezone.now())
    IdempotencyRecord.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=age_hours))
    return row


def test_records_older_than_the_retention_are_deleted_and_newer_ones_kept():
    record("old", 100)
    record("fresh", 1)
    out = StringIO()
    call_command("purge_idempotency_records", "--older-than-hours", "72", stdout=out)
    assert "deleted 1" in out.getvalue()
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_a_dry_run_deletes_nothing():
    record("old", 100)
    out = StringIO()
    call_command("purge_idempotency_records", "--dry-run", stdout=out)
    assert "1 record(s)" in out.getvalue()
    assert IdempotencyRecord.objects.count() == 1


def test_a_retention_under_one_hour_is_refused():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("purge_idempotency_records", "--older-than-hours", "0")
