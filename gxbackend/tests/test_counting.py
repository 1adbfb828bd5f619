"""Counts on tables that only grow: exact while small, PostgreSQL's estimate when large, in the admin too."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gxbackend import counting
from identity.models import User
from outbox.models import CommandStatus, OutboxCommand
from outbox.tests.conftest import enqueue_create_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed_commands():
    for _ in range(30):
        enqueue_create_user()
    OutboxCommand.objects.update(status=CommandStatus.COMMITTED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_outboxcommand")
    return 30


def test_a_small_table_is_counted_exactly(committed_commands):
    assert counting.count_or_estimate(OutboxCommand.objects.filter(status="COMMITTED")) == (30, False)


def test_a_large_table_is_estimated_by_the_planner_without_counting_rows(committed_commands, monkeypatch):
    monkeypatch.setattr(counting, "EXACT_BELOW", 10)
    with CaptureQueriesContext(connection) as queries:
        count, estimated = counting.count_or_estimate(OutboxCommand.objects.filter(status="COMMITTED"))
    assert estimated and 20 <= count <= 40
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def test_outbox_status_says_which_counts_are_estimated(committed_commands, monkeypatch):
    monkeypatch.setattr(counting, "EXACT_BELOW", 10)
    enqueue_create_user()
    out = io.StringIO()
    call_command("outbox_status", stdout=out)
    text = out.getvalue()
    assert "pending = 1\n" in text  # unfinished commands are always exact
    assert "committed = " in text and "(estimated)" in text.split("committed = ")[1].splitlines()[0]


def test_the_admin_changelist_of_a_large_table_counts_no_rows(client, committed_commands, monkeypatch):
    monkeypatch.setattr(counting, "EXACT_BELOW", 10)
    client.force_login(User.objects.create_superuser(email="admin@example.com", password="x-very-long-password-9"))
    with CaptureQueriesContext(connection) as queries:
        listing = client.get("/admin/outbox/outboxcommand/?status__exact=COMMITTED")
    assert listing.status_code == 200
    assert str(OutboxCommand.objects.order_by("-id").first().id) in listing.content.decode()
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()
              and "outbox_outboxcommand" in q["sql"]]
    assert counts == []
