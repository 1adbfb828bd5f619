"""GET /api/v1/commands/<command_id>: the requester and staff follow a command; nobody else learns it exists."""

from __future__ import annotations

import uuid

import pytest

from identity.models import User
from outbox.services import outbox_claim, outbox_record_committed, outbox_record_endorsed
from outbox.tests.conftest import (
    commit_command,
    enqueue_create_user,
    enqueue_transfer,
    new_user_id,
    projected_until,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return User.objects.create_user(email="owner@example.com", password="x-very-long-password-1")


def test_the_requester_sees_status_tx_id_and_block_once_committed(api_client, owner):
    command = enqueue_create_user(requested_by=owner)
    outbox_claim(worker_id="w", limit=1)
    outbox_record_endorsed(command_id=command.id, worker_id="w", tx_id="f" * 64, envelope=b"e")
    outbox_record_committed(command_id=command.id, worker_id="w", block_number=12, result={"v": 1})
    api_client.force_authenticate(owner)
    response = api_client.get(f"/api/v1/commands/{command.command_id}")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("command_id", "command_type", "status", "tx_id", "block_number",
                                 "validation_code", "chaincode_code")} == {
        "command_id": str(command.command_id), "command_type": "CREATE_USER", "status": "COMMITTED",
        "tx_id": "f" * 64, "block_number": 12, "validation_code": "VALID", "chaincode_code": None}
    assert "signed_envelope" not in body and "payload" not in body


def test_a_pending_command_has_no_tx_id_yet(api_client, owner):
    command = enqueue_transfer(new_user_id(), new_user_id(), 5, requested_by=owner)
    api_client.force_authenticate(owner)
    body = api_client.get(f"/api/v1/commands/{command.command_id}").json()
    assert (body["status"], body["tx_id"], body["block_number"]) == ("PENDING", None, None)


def test_another_user_gets_404_and_staff_get_the_command(api_client, owner):
    command = enqueue_create_user(requested_by=owner)
    other = User.objects.create_user(email="other@example.com", password="x-very-long-password-2")
    api_client.force_authenticate(other)
    response = api_client.get(f"/api/v1/commands/{command.command_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    staff = User.objects.create_user(email="staff@example.com", password="x-very-long-password-3", is_staff=True)
    api_client.force_authenticate(staff)
    assert api_client.get(f"/api/v1/commands/{command.command_id}").status_code == 200


def test_unknown_ids_are_404_and_anonymous_callers_401(api_client, owner):
    api_client.force_authenticate(owner)
    assert api_client.get(f"/api/v1/commands/{uuid.uuid4()}").status_code == 404
    api_client.force_authenticate(None)
    assert api_client.get(f"/api/v1/commands/{uuid.uuid4()}").status_code == 401


# --- visibility and ?wait= ----------------------------------------------------------------------------------
def _visibility(body: dict) -> tuple:
    return body["status"], body["visible"], body["visible_at_block"], body["checkpoint_block"]


def test_a_committed_command_is_visible_once_the_read_models_have_applied_its_block(api_client, owner):
    command = enqueue_create_user(requested_by=owner)
    api_client.force_authenticate(owner)
    url = f"/api/v1/commands/{command.command_id}"
    assert _visibility(api_client.get(url).json()) == ("PENDING", False, None, None)
    commit_command(command, 7)
    projected_until(6)
    assert _visibility(api_client.get(url).json()) == ("COMMITTED", False, 7, 6)
    projected_until(7)
    assert _visibility(api_client.get(url).json()) == ("COMMITTED", True, 7, 7)


def test_a_failed_command_is_final_and_visible_at_once(api_client, owner):
    from outbox.services import outbox_record_failed

    command = enqueue_create_user(requested_by=owner)
    outbox_claim(worker_id="w", limit=1)
    outbox_record_failed(command_id=command.id, worker_id="w", error="[USER_EXISTS] no", chaincode_code="USER_EXISTS")
    api_client.force_authenticate(owner)
    response = api_client.get(f"/api/v1/commands/{command.command_id}?wait=30")
    assert _visibility(response.json()) == ("FAILED", True, None, None)
    assert "Retry-After" not in response


@pytest.mark.parametrize("wait", ["-1", "31", "abc", "1.5", ""])
def test_a_bad_wait_is_a_400_naming_the_parameter(api_client, owner, wait):
    command = enqueue_create_user(requested_by=owner)
    api_client.force_authenticate(owner)
    response = api_client.get(f"/api/v1/commands/{command.command_id}", {"wait": wait})
    assert response.status_code == 400, response.json()
    assert list(response.json()["error"]["fields"]) == ["wait"]


def test_the_wait_limit_is_a_setting(api_client, owner, settings):
    settings.API_WAIT_MAX_SECONDS = 5
    command = enqueue_create_user(requested_by=owner)
    commit_command(command, 3)
    projected_until(3)
    api_client.force_authenticate(owner)
    assert api_client.get(f"/api/v1/commands/{command.command_id}", {"wait": "6"}).status_code == 400
    assert api_client.get(f"/api/v1/commands/{command.command_id}", {"wait": "5"}).json()["visible"] is True
