"""Read your own writes end to end, with real processes: ``manage.py run_submitter`` and ``manage.py
run_projector`` as child processes against devnet, the API in process (its LISTEN connection hears their
NOTIFYs). A transfer with ``Prefer: wait`` answers 201 with the balance the chain has; ``?wait=`` answers when the
projector applies the block, not at its bound; with the projector paused the wait ends at its bound, not visible.

Every wait is bounded; the only times asserted are the wait bounds themselves (a waiting request answers long
before its bound when woken, and not before it when nothing happens).
"""

from __future__ import annotations

import threading
import time

import pytest

from gxbackend.models import IdempotencyRecord
from identity import services as identity_services
from identity.models import KycSubmission, ProfileStatus
from outbox.models import CommandStatus, OutboxCommand
from projector.tests import test_end_to_end
from projector.tests.test_end_to_end import Person, wait_until
from projector.transfers import transfer_fee_qirat

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GX = 1_000_000
GENESIS = 500 * GX
BOUND = 30  # the wait a woken request asks for; it must answer long before it

workers = test_end_to_end.workers  # run_submitter and run_projector on devnet (a fixture)


@pytest.fixture
def people(workers, api_client, django_user_model):
    """Ada (NG) and Bola (DE), registered, KYC approved, ACTIVE with 500 GX; a staff reviewer follows their
    CREATE_USER commands with ?wait= (no polling)."""
    ada = Person(api_client, "ada.ryw@example.com", "NG")
    bola = Person(api_client, "bola.ryw@example.com", "DE")
    for person in (ada, bola):
        person.submit_kyc()
    reviewer = django_user_model.objects.create_superuser("reviewer.ryw@example.com", "reviewer-password-1")
    commands = [identity_services.kyc_approve(submission_id=s.pk, reviewer=reviewer).command
                for s in KycSubmission.objects.all()]
    api_client.force_authenticate(reviewer)
    for command in commands:
        body = wait_until(lambda c=command: _visible(api_client.get(f"/api/v1/commands/{c.command_id}?wait=10")),
                          f"CREATE_USER {command.command_id} is visible", lambda: _logs(workers))
        assert body["status"] == CommandStatus.COMMITTED
    api_client.force_authenticate(None)
    assert ada.profile_status() == bola.profile_status() == ProfileStatus.ACTIVE
    return ada, bola


def _visible(response) -> dict | None:
    assert response.status_code == 200, response.json()
    return response.json() if response.json()["visible"] else None


def _logs(workers) -> str:
    submitter, projector = workers
    commands = list(OutboxCommand.objects.values_list("command_type", "status", "block_number", "error_message"))
    return f"commands: {commands}\n--- submitter ---\n{submitter.output()[-3000:]}\n--- projector ---\n" \
           f"{projector.output()}"


def _chain_balance(chain, person: Person) -> int:
    return int(chain.tokenomics.evaluate("GetBalance", person.id.replace("-", "")))


def test_a_transfer_with_prefer_wait_answers_201_with_the_balance_the_chain_has(people, chain):
    ada, bola = people
    amount, fee = 12_500_000, transfer_fee_qirat(amount_qirat=12_500_000, cross_border=True)
    headers = {**ada.auth, "HTTP_PREFER": "wait=10", "HTTP_IDEMPOTENCY_KEY": "ryw-1"}
    body = {"to_user_id": bola.id, "amount": "12.5"}
    response = ada.client.post("/api/v1/transfers", body, format="json", **headers)
    assert response.status_code == 201, response.json()
    assert response["Preference-Applied"] == "wait=10"
    done = response.json()
    assert done["status"] == done["command"]["status"] == CommandStatus.COMMITTED
    assert done["command"]["visible"] is True
    assert done["command"]["checkpoint_block"] >= done["command"]["visible_at_block"] == done["command"]["block_number"]
    assert done["wallet"]["stale"] is False
    # One request, and the balance it shows is the chain's.
    assert done["wallet"]["balance_qirat"] == str(GENESIS - amount - fee) == str(_chain_balance(chain, ada))
    assert done["wallet"]["held_qirat"] == "0"
    assert response["Location"] == done["status_url"]

    # The same key again: the stored 202 is replayed and, being visible already, answered as 201 at once.
    replay = ada.client.post("/api/v1/transfers", body, format="json", **headers)
    assert (replay.status_code, replay["Idempotent-Replayed"]) == (201, "true")
    assert replay.json()["command_id"] == done["command_id"]
    assert IdempotencyRecord.objects.get().response_status == 202  # what is stored is the request's own answer
    # Bola's read with the consistency token sees the money too.
    received = bola.get(f"/api/v1/users/{bola.id}/transactions?min_block={done['command']['visible_at_block']}&wait=5")
    assert received["stale"] is False and received["results"][0]["amount_qirat"] == str(amount)


def test_with_the_projector_paused_waits_end_at_their_bound_and_wake_when_it_applies_the_block(people, workers, chain):
    ada, bola = people
    _, projector = workers
    projector.pause()
    try:
        # Prefer: the chain commits it, the read models do not show it: 202 once the wait is over.
        started = time.monotonic()
        accepted = ada.client.post("/api/v1/transfers", {"to_user_id": bola.id, "amount": "1"}, format="json",
                                   **ada.auth, HTTP_PREFER="wait=2")
        assert accepted.status_code == 202, accepted.json()
        assert accepted["Preference-Applied"] == "wait=2"
        assert time.monotonic() - started >= 2  # it held the request for its whole bound
        status_url = accepted.json()["status_url"]
        command = wait_until(lambda: _committed(ada.get(status_url)), "the transfer is COMMITTED on chain",
                             lambda: _logs(workers))
        block = command["block_number"]

        # ?wait= ends at its bound: committed, not visible; the body says how far the read models are.
        started = time.monotonic()
        body = ada.get(f"{status_url}?wait=2")
        assert time.monotonic() - started >= 2
        assert (body["status"], body["visible"], body["visible_at_block"]) == (CommandStatus.COMMITTED, False, block)
        assert body["checkpoint_block"] is None or body["checkpoint_block"] < block
        wallet = ada.get(f"/api/v1/users/{ada.id}/wallet?min_block={block}&wait=1")
        assert wallet["stale"] is True and wallet["checkpoint_block"] == body["checkpoint_block"]
        assert wallet["balance_qirat"] == str(GENESIS)  # the read model's, not yet the chain's
        after = GENESIS - GX - transfer_fee_qirat(amount_qirat=GX, cross_border=True)
        assert _chain_balance(chain, ada) == after

        # A request waiting while the projector is paused answers once the projector applies the block.
        waiting = _Get(ada, f"{status_url}?wait={BOUND}")
        wait_until(lambda: _subscribed(1), "the request waits")
    finally:
        projector.resume()
    resumed = time.monotonic()
    waiting.join(BOUND + 10)
    body = waiting.response.json()
    assert (body["status"], body["visible"]) == (CommandStatus.COMMITTED, True)
    assert body["checkpoint_block"] >= block
    assert waiting.finished_at - resumed < BOUND / 3, "it answered at its bound, not when the block was applied"
    assert ada.wallet()["balance_qirat"] == str(after) == str(_chain_balance(chain, ada))


def _committed(body: dict) -> dict | None:
    assert body["status"] != CommandStatus.FAILED, body
    return body if body["status"] == CommandStatus.COMMITTED else None


def _subscribed(count: int) -> bool:
    from gxbackend import progress

    current = progress._listener
    return current is not None and current.listening and len(current._subscriptions) >= count


class _Get(threading.Thread):
    def __init__(self, person: Person, path: str) -> None:
        super().__init__(daemon=True)
        self.person, self.path = person, path
        self.response = None
        self.finished_at = 0.0
        self.start()

    def run(self) -> None:
        from django.db import connections
        from rest_framework.test import APIClient

        try:
            self.response = APIClient().get(self.path, **self.person.auth)
        finally:
            self.finished_at = time.monotonic()
            connections.close_all()
