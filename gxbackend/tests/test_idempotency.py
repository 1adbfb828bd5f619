"""gxbackend.idempotency: a view that answers 5xx leaves nothing behind (docs/DESIGN.md §2)."""

import pytest

from gxbackend.models import IdempotencyRecord
from identity.models import User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("gxbackend.tests.urls_errors")]
URL = "/t/writes-then-503"


def test_a_5xx_with_a_key_commits_neither_the_rows_nor_the_record_and_the_key_can_be_retried(api_client):
    body = {"email": "half-done@example.com"}
    first = api_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    assert first.status_code == 503
    assert not User.objects.filter(email="half-done@example.com").exists()
    assert not IdempotencyRecord.objects.exists()
    again = api_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry-me")
    assert again.status_code == 503 and "Idempotent-Replayed" not in again  # ran again, not replayed
    assert not User.objects.filter(email="half-done@example.com").exists()

