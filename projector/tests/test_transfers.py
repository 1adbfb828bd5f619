"""POST /api/v1/transfers: what is accepted, every refusal with its status and fields, idempotency, throttling.

Authorization choice: anonymous → 401; an account without a profile (staff) → 403 ``no_wallet`` (it can never
send); a profile not yet ACTIVE on chain → 409 ``sender_not_active`` and a FROZEN one → 409 ``wallet_frozen``
(states that change: the same request may succeed later).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from gxbackend.models import IdempotencyRecord
from identity.models import ProfileStatus, UserProfile
from identity.tokens import tokens_for
from outbox.models import CommandStatus, CommandType, OutboxCommand
from projector.models import Checkpoint, Wallet
from projector.services import CHECKPOINT_NAME

pytestmark = pytest.mark.django_db
URL = "/api/v1/transfers"
GX = 1_000_000


@pytest.fixture
def wallet_user(make_user):
    """``wallet_user(balance_qirat=500 GX, status=ACTIVE, nationality="NG")`` → a user with a projected wallet."""

    def make(balance_qirat: int = 500 * GX, *, status: str = ProfileStatus.ACTIVE, nationality: str = "NG",
             frozen: bool = False):
        user = make_user(status=status, nationality=nationality)
        if status in (ProfileStatus.ACTIVE, ProfileStatus.FROZEN):
            Wallet.objects.create(user=user, balance_qirat=balance_qirat, frozen=frozen or status == "FROZEN")
        return user

    return make


@pytest.fixture
def post(api_client):
    """``post(user, body, key=None)`` → the response of POST /api/v1/transfers as ``user`` (None: anonymous)."""

    def send(user, body: dict, key: str | None = None):
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
        if user is not None:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {tokens_for(user)['access']}"
        return api_client.post(URL, body, format="json", **headers)

    return send


@pytest.fixture
def pair(wallet_user):
    return wallet_user(), wallet_user()


def transfers() -> list[OutboxCommand]:
    return list(OutboxCommand.objects.filter(command_type=CommandType.TRANSFER))


# --- accepted ---------------------------------------------------------------------------------------------
def test_a_transfer_by_id_in_gx_is_accepted_and_enqueued(pair, post, caplog):
    sender, recipient = pair
    with caplog.at_level(logging.INFO, logger="gx.money"):
        response = post(sender, {"to_user_id": str(recipient.pk), "amount": "12.5", "remark": "rent"})
    assert response.status_code == 202, response.json()
    body = response.json()
    command = OutboxCommand.objects.get()
    assert body == {"command_id": str(command.command_id), "status": "PENDING",
                    "status_url": f"/api/v1/commands/{command.command_id}", "amount_qirat": "12500000",
                    "amount": "12.500000", "fee_qirat": "6250", "fee": "0.006250"}
    assert command.command_type == CommandType.TRANSFER
    assert command.aggregate_id == sender.pk.hex
    assert command.payload == {"from_user_id": sender.pk.hex, "to_user_id": recipient.pk.hex,
                               "amount_qirat": "12500000", "tx_type": "", "remark": "rent"}
    assert command.requested_by == sender
    # No client key: one is generated, so a retried submission can never move the money twice.
    assert command.idempotency_key.startswith(f"{sender.pk.hex}:auto:")
    assert "transfer enqueued" in caplog.text


def test_a_transfer_by_email_in_qirat_is_accepted(pair, post):
    sender, recipient = pair
    response = post(sender, {"to_email": recipient.email.upper(), "amount_qirat": "2999999"})
    assert response.status_code == 202, response.json()
    assert response.json()["fee_qirat"] == "0"
    command = OutboxCommand.objects.get()
    assert command.payload["to_user_id"] == recipient.pk.hex
    assert command.payload["remark"] == ""


def test_the_status_url_answers_with_the_command(pair, post, api_client):
    sender, recipient = pair
    body = post(sender, {"to_user_id": str(recipient.pk), "amount": "1"}).json()
    status = api_client.get(body["status_url"], HTTP_AUTHORIZATION=f"Bearer {tokens_for(sender)['access']}")
    assert status.status_code == 200
    assert status.json()["command_id"] == body["command_id"]
    assert status.json()["command_type"] == "TRANSFER"


def test_a_cross_border_transfer_quotes_15_bps(wallet_user, post):
    sender, recipient = wallet_user(nationality="NG"), wallet_user(nationality="DE")
    response = post(sender, {"to_user_id": str(recipient.pk), "amount": "1"})
    assert response.status_code == 202
    assert response.json()["fee_qirat"] == "1500"


def test_the_whole_balance_minus_the_fee_can_be_sent_but_not_one_qirat_more(wallet_user, post):
    sender, recipient = wallet_user(100 * GX + 50_000), wallet_user()
    too_much = post(sender, {"to_user_id": str(recipient.pk), "amount_qirat": str(100 * GX + 1)})
    assert too_much.status_code == 409
    assert too_much.json()["error"]["code"] == "insufficient_funds"
    assert "fee 0.100000 GX (100000 qirat" in too_much.json()["error"]["message"]
    exact = post(sender, {"to_user_id": str(recipient.pk), "amount": "100"})  # 100 GX + 5 bps = the balance
    assert exact.status_code == 202, exact.json()


def test_insufficient_funds_states_the_cross_border_fee(wallet_user, post):
    sender, recipient = wallet_user(GX), wallet_user(nationality="DE")
    response = post(sender, {"to_user_id": str(recipient.pk), "amount": "1"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_funds"
    assert "fee 0.001500 GX (1500 qirat, 0.15 % cross-border)" in error["message"]
    assert not transfers()


# --- funds held by transfers in flight ----------------------------------------------------------------------
def test_transfers_in_flight_hold_their_amount_and_fee(wallet_user, post):
    sender, recipient = wallet_user(10 * GX), wallet_user()
    assert post(sender, {"to_user_id": str(recipient.pk), "amount": "6"}).status_code == 202  # + 0.003 fee
    second = post(sender, {"to_user_id": str(recipient.pk), "amount": "4"})  # 4.002 > 10 - 6.003
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "insufficient_funds"
    assert ("exceeds your available 3.997000 GX (balance 10.000000 GX, of which 6.003000 GX is held by 1 "
            "transfer on its way to the chain)") in second.json()["error"]["message"]
    assert post(sender, {"to_user_id": str(recipient.pk), "amount": "3.99"}).status_code == 202  # 3.991995
    assert len(transfers()) == 2


def test_failed_transfers_hold_nothing_and_committed_ones_hold_until_projected(wallet_user, post):
    sender, recipient = wallet_user(10 * GX), wallet_user()
    body = {"to_user_id": str(recipient.pk), "amount": "6"}
    assert post(sender, body).status_code == 202
    OutboxCommand.objects.update(status=CommandStatus.FAILED)
    assert post(sender, body).status_code == 202  # the failed one held nothing
    # The second one committed in block 7; the projector has applied blocks up to 5 only.
    OutboxCommand.objects.filter(status=CommandStatus.PENDING).update(
        status=CommandStatus.COMMITTED, block_number=7, result={"fee": "3000"})
    Checkpoint.objects.update_or_create(name=CHECKPOINT_NAME, defaults={"block_number": 6})
    assert post(sender, {"to_user_id": str(recipient.pk), "amount": "3.99"}).status_code == 202
    assert post(sender, {"to_user_id": str(recipient.pk), "amount": "0.01"}).status_code == 409
    # The projector applies block 7: the balance shows the transfer, which holds nothing any more.
    Checkpoint.objects.filter(name=CHECKPOINT_NAME).update(block_number=8)
    Wallet.objects.filter(user=sender).update(balance_qirat=10 * GX - 6_003_000)
    held = post(sender, {"to_user_id": str(recipient.pk), "amount": "0.01"})
    assert held.status_code == 409  # the 3.99 GX transfer, still pending, holds 3.991995 of 3.997
    assert "held by 1 transfer on its way" in held.json()["error"]["message"]
    assert post(sender, {"to_user_id": str(recipient.pk), "amount": "0.005"}).status_code == 202


def test_what_transfers_in_flight_hold_is_read_in_three_queries_however_many_there_are(
    wallet_user, django_assert_num_queries
):
    from django.db import transaction

    from outbox.services import outbox_enqueue
    from projector.transfers import held_by_transfers_in_flight

    sender = wallet_user(1000 * GX, nationality="NG")
    sent = [("NG", 2 * GX), ("GH", 50 * GX), ("NG", 150 * GX), ("KE", 10 * GX), ("NG", 1)]
    with transaction.atomic():
        for nationality, amount in sent:
            outbox_enqueue(command_type=CommandType.TRANSFER, aggregate_id=sender.pk.hex, payload={
                "from_user_id": sender.pk.hex, "to_user_id": wallet_user(nationality=nationality).pk.hex,
                "amount_qirat": amount})
    # One committed in a block the projector has not applied: it holds the fee the chaincode took.
    OutboxCommand.objects.filter(payload__amount_qirat="1").update(
        status=CommandStatus.COMMITTED, block_number=9, result={"fee": "5"})
    Checkpoint.objects.update_or_create(name=CHECKPOINT_NAME, defaults={"block_number": 8})
    profile = UserProfile.objects.get(user=sender)

    with django_assert_num_queries(3):  # checkpoint, transfers, recipients (the sender's wallet row is locked)
        held = held_by_transfers_in_flight(profile)
    # 2 GX free; 50 GX cross-border 0.15 %; 150 GX 0.1 %; 10 GX cross-border 0.15 %; 1 qirat + the taken 5
    assert held == (2 * GX + (50 * GX + 75_000) + (150 * GX + 150_000) + (10 * GX + 15_000) + (1 + 5), 5)


def test_what_transfers_in_flight_hold_is_read_from_the_senders_own_rows_only(wallet_user):
    # Through the (aggregate_id, id) index of unfinished commands, never the claim's index of every user's
    # unfinished commands, which the planner once chose and filtered on aggregate_id (outbox/models.py).
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from gxbackend.testing import indexes_planned
    from outbox.services import outbox_enqueue
    from outbox.tests.conftest import queue_indexes
    from projector.transfers import held_by_transfers_in_flight

    sender, recipient = wallet_user(), wallet_user()
    outbox_enqueue(command_type=CommandType.TRANSFER, aggregate_id=sender.pk.hex, payload={
        "from_user_id": sender.pk.hex, "to_user_id": recipient.pk.hex, "amount_qirat": GX})
    with CaptureQueriesContext(connection) as queries:
        assert held_by_transfers_in_flight(UserProfile.objects.get(user=sender))[1] == 1
    [sql] = [q["sql"] for q in queries.captured_queries if 'FROM "outbox_outboxcommand"' in q["sql"]]
    assert "outbox_unfinished_agg_idx" in indexes_planned(sql)
    fallback = indexes_planned(sql, without=("outbox_unfinished_agg_idx",))
    assert not queue_indexes() & set(fallback), fallback


@pytest.mark.django_db(transaction=True)
def test_two_transfers_at_once_cannot_spend_the_same_funds(wallet_user, monkeypatch):
    from django.db import connection
    from rest_framework.test import APIClient

    from projector import transfers as money

    sender, recipient = wallet_user(10 * GX), wallet_user()
    checked = money.held_by_transfers_in_flight

    def slow_check(profile):  # both requests are inside their check at once
        result = checked(profile)
        time.sleep(0.3)
        return result

    monkeypatch.setattr(money, "held_by_transfers_in_flight", slow_check)
    token = tokens_for(sender)["access"]
    start, statuses = threading.Barrier(2), []

    def send():
        try:
            start.wait()
            response = APIClient().post(URL, {"to_user_id": str(recipient.pk), "amount": "6"}, format="json",
                                        HTTP_AUTHORIZATION=f"Bearer {token}")
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [202, 409]
    assert len(transfers()) == 1


# --- bad input ----------------------------------------------------------------------------------------------
BAD_BODIES = [
    ({}, {"to_user_id", "to_email", "amount", "amount_qirat"}),
    ({"amount": "1"}, {"to_user_id", "to_email"}),
    ({"to_user_id": "R", "to_email": "x@example.com", "amount": "1"}, {"to_user_id", "to_email"}),
    ({"to_user_id": "R"}, {"amount", "amount_qirat"}),
    ({"to_user_id": "R", "amount": "1", "amount_qirat": "1000000"}, {"amount", "amount_qirat"}),
    ({"to_user_id": "R", "amount": 12.5}, {"amount"}),
    ({"to_user_id": "R", "amount_qirat": 12500000}, {"amount_qirat"}),
    ({"to_user_id": "R", "amount": "12.1234567"}, {"amount"}),
    ({"to_user_id": "R", "amount": "0"}, {"amount"}),
    ({"to_user_id": "R", "amount": "-1"}, {"amount"}),
    ({"to_user_id": "R", "amount": "1e3"}, {"amount"}),
    ({"to_user_id": "R", "amount_qirat": "0"}, {"amount_qirat"}),
    ({"to_user_id": "R", "amount_qirat": "1.5"}, {"amount_qirat"}),
    ({"to_user_id": "R", "amount_qirat": "9223372036854775808"}, {"amount_qirat"}),
    ({"to_user_id": "R", "amount": "1", "remark": "x" * 141}, {"remark"}),
    ({"to_user_id": "R", "amount": "1", "remark": None}, {"remark"}),
    ({"to_user_id": "not-a-uuid", "amount": "1"}, {"to_user_id"}),
    ({"to_email": "not-an-email", "amount": "1"}, {"to_email"}),
    ({"to_user_id": "R", "amount": "1", "fee": "0"}, {"fee"}),
]


@pytest.mark.parametrize(("body", "fields"), BAD_BODIES)
def test_a_bad_body_is_refused_with_400_naming_the_fields(pair, post, body, fields):
    sender, recipient = pair
    body = {name: (str(recipient.pk) if value == "R" else value) for name, value in body.items()}
    response = post(sender, body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["fields"]) == fields, error
    assert not transfers()


def test_a_remark_of_140_characters_is_accepted(pair, post):
    sender, recipient = pair
    assert post(sender, {"to_user_id": str(recipient.pk), "amount": "1", "remark": "é" * 140}).status_code == 202


def test_an_unknown_recipient_is_404_naming_the_field(pair, post):
    sender, _ = pair
    by_id = post(sender, {"to_user_id": str(uuid.uuid4()), "amount": "1"})
    assert by_id.status_code == 404
    assert by_id.json()["error"]["code"] == "recipient_not_found"
    assert set(by_id.json()["error"]["fields"]) == {"to_user_id"}
    by_email = post(sender, {"to_email": "nobody@example.com", "amount": "1"})
    assert by_email.status_code == 404
    assert set(by_email.json()["error"]["fields"]) == {"to_email"}
    assert not transfers()


def test_sending_to_yourself_is_400(pair, post):
    sender, _ = pair
    for body in ({"to_user_id": str(sender.pk), "amount": "1"}, {"to_email": sender.email, "amount": "1"}):
        response = post(sender, body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "self_transfer"
    assert not transfers()


@pytest.mark.parametrize(("status", "code"), [
    (ProfileStatus.FROZEN, "wallet_frozen"),
    (ProfileStatus.REGISTERED, "recipient_not_active"),
    (ProfileStatus.PENDING_KYC_REVIEW, "recipient_not_active"),
    (ProfileStatus.APPROVED_PENDING_ONCHAIN, "recipient_not_active"),
    (ProfileStatus.KYC_REJECTED, "recipient_not_active"),
])
def test_a_recipient_who_cannot_receive_is_409(wallet_user, post, status, code):
    sender, recipient = wallet_user(), wallet_user(status=status)
    response = post(sender, {"to_user_id": str(recipient.pk), "amount": "1"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == code
    assert not transfers()


# --- authorization --------------------------------------------------------------------------------------
def test_anonymous_is_401(pair, post):
    _, recipient = pair
    response = post(None, {"to_user_id": str(recipient.pk), "amount": "1"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(("status", "code"), [
    (ProfileStatus.FROZEN, "wallet_frozen"),
    (ProfileStatus.REGISTERED, "sender_not_active"),
    (ProfileStatus.PENDING_KYC_REVIEW, "sender_not_active"),
    (ProfileStatus.APPROVED_PENDING_ONCHAIN, "sender_not_active"),
    (ProfileStatus.KYC_REJECTED, "sender_not_active"),
])
def test_a_sender_who_cannot_send_is_409(wallet_user, post, status, code):
    sender, recipient = wallet_user(status=status), wallet_user()
    response = post(sender, {"to_user_id": str(recipient.pk), "amount": "1"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == code
    assert not transfers()


def test_an_account_without_a_profile_is_403(pair, post, django_user_model):
    _, recipient = pair
    staff = django_user_model.objects.create_user("ops@example.com", None, is_staff=True)
    response = post(staff, {"to_user_id": str(recipient.pk), "amount": "1"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "no_wallet"


# --- idempotency --------------------------------------------------------------------------------------------
def test_the_same_key_and_body_returns_the_same_command(pair, post):
    sender, recipient = pair
    body = {"to_user_id": str(recipient.pk), "amount": "5", "remark": "once"}
    first = post(sender, body, key="pay-rent-2025-05")
    again = post(sender, body, key="pay-rent-2025-05")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    command = OutboxCommand.objects.get()
    # The key travels into the row and, from there, into the chaincode's idempotencyKey (scoped by sender).
    assert command.idempotency_key == f"{sender.pk.hex}:pay-rent-2025-05"


def test_the_same_key_with_another_body_is_422(pair, post):
    sender, recipient = pair
    assert post(sender, {"to_user_id": str(recipient.pk), "amount": "5"}, key="k1").status_code == 202
    reused = post(sender, {"to_user_id": str(recipient.pk), "amount": "6"}, key="k1")
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert len(transfers()) == 1


def test_a_refused_request_stores_nothing_so_the_key_can_be_retried(wallet_user, post):
    sender, recipient = wallet_user(GX), wallet_user()
    body = {"to_user_id": str(recipient.pk), "amount": "5"}
    assert post(sender, body, key="k2").status_code == 409
    Wallet.objects.filter(user=sender).update(balance_qirat=10 * GX)
    assert post(sender, body, key="k2").status_code == 202


def test_the_outbox_row_still_answers_once_the_idempotency_record_is_gone(pair, post):
    sender, recipient = pair
    body = {"to_user_id": str(recipient.pk), "amount": "5"}
    first = post(sender, body, key="k3").json()
    IdempotencyRecord.objects.all().delete()  # e.g. expired
    # A replay succeeds whatever changed since (as on chain): the wallet emptied and frozen.
    Wallet.objects.filter(user=sender).update(balance_qirat=0, frozen=True)
    UserProfile.objects.filter(user=sender).update(status=ProfileStatus.FROZEN)
    again = post(sender, body, key="k3")
    assert again.status_code == 202
    assert again.json()["command_id"] == first["command_id"]
    IdempotencyRecord.objects.all().delete()
    other = post(sender, {**body, "amount": "6"}, key="k3")
    assert other.status_code == 422
    assert len(transfers()) == 1


def test_two_users_with_the_same_key_get_two_transfers(wallet_user, post):
    a, b, c = wallet_user(), wallet_user(), wallet_user()
    assert post(a, {"to_user_id": str(c.pk), "amount": "1"}, key="same").status_code == 202
    assert post(b, {"to_user_id": str(c.pk), "amount": "1"}, key="same").status_code == 202
    assert sorted(cmd.idempotency_key for cmd in transfers()) == sorted([f"{a.pk.hex}:same", f"{b.pk.hex}:same"])


def test_a_long_key_is_hashed_to_fit_the_chaincode(pair, post):
    sender, recipient = pair
    key = "k" * 128
    assert post(sender, {"to_user_id": str(recipient.pk), "amount": "1"}, key=key).status_code == 202
    stored = OutboxCommand.objects.get().idempotency_key
    assert stored.startswith(f"{sender.pk.hex}:sha256:") and len(stored) <= 128


def test_without_a_key_every_request_is_a_new_transfer(pair, post):
    sender, recipient = pair
    body = {"to_user_id": str(recipient.pk), "amount": "1"}
    assert post(sender, body).status_code == post(sender, body).status_code == 202
    assert len(transfers()) == 2


# --- throttle ------------------------------------------------------------------------------------
def test_transfers_are_throttled_per_user(pair, post, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "transfer": "2/min"}}
    sender, recipient = pair
    body = {"to_user_id": str(recipient.pk), "amount": "1"}
    assert [post(sender, body).status_code for _ in range(3)] == [202, 202, 429]
    assert post(recipient, {"to_user_id": str(sender.pk), "amount": "1"}).status_code == 202


def test_while_redis_is_down_transfers_are_not_throttled_shut(pair, post, settings, unreachable_cache):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "transfer": "1/min"}}
    sender, recipient = pair
    body = {"to_user_id": str(recipient.pk), "amount": "1"}
    assert [post(sender, body).status_code for _ in range(2)] == [202, 202]
