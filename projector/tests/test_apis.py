"""GET /api/v1/users/:id/wallet and /transactions: owner or staff, amounts as qirat strings with GX beside."""

from __future__ import annotations

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
