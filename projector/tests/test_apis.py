"""GET /api/v1/users/:id/wallet and /transactions: owner or staff, amounts as qirat strings with GX beside."""

from __future__ import annotations

import threading
import time

import pytest

from projector.services import apply_block
from projector.tests.conftest import block, transfer, user_created

pytestmark = pytest.mark.django_db


@pytest.fixture
def funded(make_user):
    alice, bob = make_user(), make_user()
    apply_block(block(1, user_created(alice.pk.hex), user_created(bob.pk.hex)))
    for n in range(2, 7):
        balance_a = 500_000_000 - (n - 1) * (5_000_000 + 2_500)
        apply_block(block(n, transfer(alice.pk.hex, bob.pk.hex, 5_000_000, 2_500, balance_a,
                                      500_000_000 + (n - 1) * 5_000_000, remark=f"t{n}")))
    return alice, bob


def test_the_owner_sees_the_wallet_in_qirat_and_gx(api_client, funded):
    alice, _ = funded
    api_client.force_authenticate(alice)
    body = api_client.get(f"/api/v1/users/{alice.pk}/wallet").json()
    assert body["balance_qirat"] == "474987500" and body["balance"] == "474.987500"
    assert (body["held_qirat"], body["available_qirat"], body["available"]) == ("0", "474987500", "474.987500")
    assert body["frozen"] is False


def test_the_wallet_shows_what_transfers_in_flight_hold(api_client, funded):
    alice, bob = funded
    api_client.force_authenticate(alice)
    sent = api_client.post("/api/v1/transfers", {"to_user_id": str(bob.pk), "amount": "10"}, format="json")
    assert sent.status_code == 202, sent.json()
    body = api_client.get(f"/api/v1/users/{alice.pk}/wallet").json()
    assert body["balance_qirat"] == "474987500"  # the chain has not moved it yet
    assert (body["held_qirat"], body["held"]) == ("10005000", "10.005000")  # 10 GX + 5 bps
    assert (body["available_qirat"], body["available"]) == ("464982500", "464.982500")


def test_another_user_gets_404_and_staff_sees_it(api_client, funded, make_user):
    alice, bob = funded
    api_client.force_authenticate(bob)
    assert api_client.get(f"/api/v1/users/{alice.pk}/wallet").status_code == 404
    assert api_client.get(f"/api/v1/users/{alice.pk}/transactions").status_code == 404
    api_client.force_authenticate(make_user(is_staff=True))
    assert api_client.get(f"/api/v1/users/{alice.pk}/wallet").status_code == 200


def test_a_user_without_wallet_gets_404_with_a_reason(api_client, make_user):
    carl = make_user()
    api_client.force_authenticate(carl)
    response = api_client.get(f"/api/v1/users/{carl.pk}/wallet")
    assert response.status_code == 404 and response.json()["error"]["code"] == "wallet_not_found"


def test_transactions_page_newest_first_with_a_cursor_and_filter_by_kind(api_client, funded):
    alice, _ = funded
    api_client.force_authenticate(alice)
    first = api_client.get(f"/api/v1/users/{alice.pk}/transactions?kind=SENT&page_size=3").json()
    assert [r["remark"] for r in first["results"]] == ["t6", "t5", "t4"]
    assert first["results"][0]["amount_qirat"] == "5000000" and first["results"][0]["fee"] == "0.002500"
    second = api_client.get(first["next"]).json()
    assert [r["remark"] for r in second["results"]] == ["t3", "t2"] and second["next"] is None
    everything = api_client.get(f"/api/v1/users/{alice.pk}/transactions").json()["results"]
    assert {r["kind"] for r in everything} == {"GENESIS", "SENT", "FEE"}


def test_transactions_filter_by_block_time_and_reject_a_bad_filter(api_client, funded):
    alice, _ = funded
    api_client.force_authenticate(alice)
    url = f"/api/v1/users/{alice.pk}/transactions"
    assert api_client.get(url, {"since": "2999-01-01T00:00:00Z"}).json()["results"] == []
    assert len(api_client.get(url, {"until": "2999-01-01T00:00:00Z"}).json()["results"]) == 11
    response = api_client.get(url, {"kind": "BOGUS"})
    assert response.status_code == 400 and "kind" in response.json()["error"]["fields"]


# --- min_block / wait on reads, Prefer: wait on transfers ---------------------------------------------------
def test_reads_say_how_fresh_they_are_against_min_block(api_client, funded):
    alice, _ = funded  # blocks 1-6 applied
    api_client.force_authenticate(alice)
    wallet = f"/api/v1/users/{alice.pk}/wallet"
    rows = f"/api/v1/users/{alice.pk}/transactions"
    plain = api_client.get(wallet).json()
    assert (plain["checkpoint_block"], plain["stale"]) == (6, False)
    assert api_client.get(wallet, {"min_block": "6"}).json()["stale"] is False
    ahead = api_client.get(wallet, {"min_block": "7"})  # wait=0: answered at once, saying it may be stale
    assert ahead.status_code == 200
    assert (ahead.json()["checkpoint_block"], ahead.json()["stale"], ahead.json()["balance_qirat"]) == (
        6, True, "474987500")
    listed = api_client.get(rows, {"min_block": "7", "kind": "SENT"}).json()
    assert (listed["checkpoint_block"], listed["stale"], len(listed["results"])) == (6, True, 5)
    assert api_client.get(rows, {"min_block": "2"}).json()["stale"] is False


@pytest.mark.parametrize("params", [{"min_block": "-1"}, {"min_block": "x"}, {"min_block": str(2**63)},
                                    {"min_block": "3", "wait": "31"}, {"min_block": "3", "wait": "-2"}])
def test_a_bad_min_block_or_wait_is_a_400_naming_it(api_client, funded, params):
    alice, _ = funded
    api_client.force_authenticate(alice)
    for path in ("wallet", "transactions"):
        response = api_client.get(f"/api/v1/users/{alice.pk}/{path}", params)
        assert response.status_code == 400, response.json()
        assert set(response.json()["error"]["fields"]) <= {"min_block", "wait"}


def test_another_users_wallet_is_404_before_any_wait(api_client, funded):
    alice, bob = funded
    api_client.force_authenticate(bob)
    assert api_client.get(f"/api/v1/users/{alice.pk}/wallet", {"min_block": "99", "wait": "30"}).status_code == 404


def _fail_the_next_transfer(**outcome) -> threading.Thread:
    """What the submitter does once a transfer is enqueued (here while its request waits): it becomes final."""
    from django.db import connections

    from outbox.models import CommandStatus, OutboxCommand
    from outbox.services import outbox_claim, outbox_record_endorsed, outbox_record_failed

    def run() -> None:
        try:
            deadline = time.monotonic() + 20
            while not OutboxCommand.objects.filter(status=CommandStatus.PENDING).exists():
                assert time.monotonic() < deadline, "no transfer was enqueued"
                time.sleep(0.05)
            command = OutboxCommand.objects.get(status=CommandStatus.PENDING)
            outbox_claim(worker_id="w", limit=10)
            outbox_record_endorsed(command_id=command.id, worker_id="w", tx_id="c" * 64, envelope=b"e")
            outbox_record_failed(command_id=command.id, worker_id="w", **outcome)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_prefer_wait_answers_201_with_a_failed_transfer_and_its_unchanged_wallet(api_client, funded):
    alice, bob = funded
    api_client.force_authenticate(alice)
    submitter = _fail_the_next_transfer(error="[WALLET_FROZEN] frozen", chaincode_code="WALLET_FROZEN")
    response = api_client.post("/api/v1/transfers", {"to_user_id": str(bob.pk), "amount": "1"}, format="json",
                               HTTP_PREFER="wait=30")
    submitter.join(5)
    assert response.status_code == 201, response.json()
    assert response["Preference-Applied"] == "wait=30"
    body = response.json()
    assert (body["status"], body["command"]["chaincode_code"], body["command"]["visible"]) == (
        "FAILED", "WALLET_FROZEN", True)
    assert (body["wallet"]["balance_qirat"], body["wallet"]["held_qirat"]) == ("474987500", "0")


@pytest.mark.django_db(transaction=True)
def test_prefer_wait_ends_in_a_202_at_its_bound_and_is_not_applied_over_the_bound(api_client, funded, settings):
    alice, bob = funded
    api_client.force_authenticate(alice)
    body = {"to_user_id": str(bob.pk), "amount": "1"}
    timed_out = api_client.post("/api/v1/transfers", body, format="json", HTTP_PREFER="wait=1")
    assert timed_out.status_code == 202 and timed_out.json()["status"] == "PENDING"
    assert timed_out["Preference-Applied"] == "wait=1" and "Retry-After" not in timed_out
    settings.API_WAIT_MAX_WAITERS = 0  # no thread may wait: answered at once, saying the preference was not applied
    declined = api_client.post("/api/v1/transfers", body, format="json", HTTP_PREFER="wait=10")
    assert declined.status_code == 202
    assert "Preference-Applied" not in declined and declined["Retry-After"] == "1"
    plain = api_client.post("/api/v1/transfers", body, format="json")
    assert plain.status_code == 202 and "Preference-Applied" not in plain and "Retry-After" not in plain
