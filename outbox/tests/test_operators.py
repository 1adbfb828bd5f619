"""Operators: outbox_status, outbox_retry and the admin's requeue action."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from identity.models import User
from outbox.models import CommandStatus, OutboxCommand
from outbox.services import outbox_claim, outbox_record_failed
from outbox.tests.conftest import enqueue_create_user

pytestmark = pytest.mark.django_db


def failed_command(*, dead_letter: bool, code: str = "") -> OutboxCommand:
    command = enqueue_create_user()
    outbox_claim(worker_id="w", limit=100)
    outbox_record_failed(command_id=command.id, worker_id="w", error=f"[{code}] no" if code else "access denied",
                         chaincode_code=code, dead_letter=dead_letter)
    return command


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_outbox_status_counts_by_status_and_lists_dead_letters_with_their_reasons():
    enqueue_create_user()
    dead = failed_command(dead_letter=True)
    text = run("outbox_status")
    assert "pending = 1" in text
    assert "failed = 1" in text and "dead letters = 1" in text and "queue depth =" in text
    assert "oldest pending age =" in text
    assert f"#{dead.id} {dead.command_id} CREATE_USER" in text and "access denied" in text


def test_outbox_retry_requeues_failed_commands_with_a_fresh_budget():
    first, second = failed_command(dead_letter=True), failed_command(dead_letter=False, code="USER_EXISTS")
    assert "requeued 1 command(s)" in run("outbox_retry", str(first.command_id))
    first.refresh_from_db()
    assert (first.status, first.attempts, first.dead_lettered) == (CommandStatus.PENDING, 0, False)
    assert "requeued 1 command(s)" in run("outbox_retry", "--failed")
    assert OutboxCommand.objects.get(id=second.id).status == CommandStatus.PENDING


def test_outbox_retry_refuses_commands_that_have_not_failed():
    pending = enqueue_create_user()
    with pytest.raises(CommandError, match="only FAILED"):
        run("outbox_retry", str(pending.id))
    with pytest.raises(CommandError):
        run("outbox_retry")


def test_the_admin_lists_commands_and_requeues_the_failed_ones(client):
    staff = User.objects.create_superuser(email="admin@example.com", password="x-very-long-password-9")
    client.force_login(staff)
    dead = failed_command(dead_letter=True)
    listing = client.get("/admin/outbox/outboxcommand/?status__exact=FAILED")
    assert listing.status_code == 200 and str(dead.id) in listing.content.decode()
    response = client.post("/admin/outbox/outboxcommand/",
                           {"action": "requeue", "_selected_action": [dead.id]}, follow=True)
    assert response.status_code == 200
    dead.refresh_from_db()
    assert dead.status == CommandStatus.PENDING and not dead.dead_lettered
