"""Freeze / unfreeze: the services (one outbox command, who and when) and the wallet admin's actions."""

from __future__ import annotations

import logging

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from gxbackend.exceptions import Conflict, ValidationFailed
from identity.models import ProfileStatus
from outbox.models import CommandStatus, CommandType, OutboxCommand
from projector.models import Wallet
from projector.transfers import wallet_freeze, wallet_unfreeze

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/projector/wallet/"


@pytest.fixture
def holder(make_user):
    """``holder(status)`` → a user with a wallet whose profile has ``status``."""

    def make(status: str = ProfileStatus.ACTIVE):
        user = make_user(status=status)
        Wallet.objects.create(user=user, balance_qirat=500_000_000, frozen=status == ProfileStatus.FROZEN)
        return user

    return make


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops@example.com", "ops-password-123")


# --- services -----------------------------------------------------------------------------------------------
def test_freezing_an_active_wallet_enqueues_freeze_wallet_with_who_and_when(holder, operator, caplog):
    user = holder()
    with caplog.at_level(logging.INFO, logger="gx.money"):
        command = wallet_freeze(user_id=user.pk, reason="  suspicious activity ", actor=operator)
    assert command.command_type == CommandType.FREEZE_WALLET
    assert command.aggregate_id == user.pk.hex
    assert command.payload == {"user_id": user.pk.hex, "reason": "suspicious activity"}
    assert command.requested_by == operator and command.created_at is not None
    record = next(r for r in caplog.records if r.message == "wallet freeze requested")
    assert record.actor == "ops@example.com" and record.command_id == str(command.command_id)
    # The profile changes only when the projector sees WalletFrozen.
    user.profile.refresh_from_db()
    assert user.profile.status == ProfileStatus.ACTIVE


def test_unfreezing_a_frozen_wallet_enqueues_unfreeze_wallet(holder, operator, caplog):
    user = holder(ProfileStatus.FROZEN)
    with caplog.at_level(logging.INFO, logger="gx.money"):
        command = wallet_unfreeze(user_id=user.pk, actor=operator)
    assert command.command_type == CommandType.UNFREEZE_WALLET
    assert command.payload == {"user_id": user.pk.hex}
    assert command.requested_by == operator
    assert "wallet unfreeze requested" in caplog.text


@pytest.mark.parametrize("status", [s for s in ProfileStatus.values if s != ProfileStatus.ACTIVE])
def test_only_active_wallets_can_be_frozen(make_user, operator, status):
    user = make_user(status=status)
    with pytest.raises(Conflict) as caught:
        wallet_freeze(user_id=user.pk, reason="x", actor=operator)
    assert caught.value.code == "wallet_state_conflict"
    assert not OutboxCommand.objects.exists()


@pytest.mark.parametrize("status", [s for s in ProfileStatus.values if s != ProfileStatus.FROZEN])
def test_only_frozen_wallets_can_be_unfrozen(make_user, operator, status):
    user = make_user(status=status)
    with pytest.raises(Conflict):
        wallet_unfreeze(user_id=user.pk, actor=operator)
    assert not OutboxCommand.objects.exists()


@pytest.mark.parametrize("reason", ["", "   ", "x" * 141])
def test_a_freeze_needs_a_reason_of_1_to_140_characters(holder, operator, reason):
    with pytest.raises(ValidationFailed) as caught:
        wallet_freeze(user_id=holder().pk, reason=reason, actor=operator)
    assert set(caught.value.fields) == {"reason"}
    assert not OutboxCommand.objects.exists()


def test_a_reason_of_140_characters_is_taken(holder, operator):
    assert wallet_freeze(user_id=holder().pk, reason="é" * 140, actor=operator).payload["reason"] == "é" * 140


def test_a_second_freeze_while_one_is_on_its_way_is_refused(holder, operator):
    user = holder()
    first = wallet_freeze(user_id=user.pk, reason="one", actor=operator)
    with pytest.raises(Conflict) as caught:
        wallet_freeze(user_id=user.pk, reason="two", actor=operator)
    assert caught.value.code == "wallet_command_pending"
    OutboxCommand.objects.filter(pk=first.pk).update(status=CommandStatus.COMMITTED)
    assert wallet_freeze(user_id=user.pk, reason="again", actor=operator)


# --- admin --------------------------------------------------------------------------------------------------
def test_the_freeze_action_asks_for_a_reason_then_enqueues(client, holder, operator):
    user = holder()
    client.force_login(operator)
    asked = client.post(CHANGELIST, {"action": "freeze_selected", ACTION_CHECKBOX_NAME: [str(user.pk)]})
    assert asked.status_code == 200
    assert b"freeze-form" in asked.content and user.email.encode() in asked.content
    assert not OutboxCommand.objects.exists()

    empty = client.post(CHANGELIST, {"action": "freeze_selected", ACTION_CHECKBOX_NAME: [str(user.pk)],
                                     "apply": "1", "reason": ""})
    assert empty.status_code == 200 and b"This field is required" in empty.content
    assert not OutboxCommand.objects.exists()

    done = client.post(CHANGELIST, {"action": "freeze_selected", ACTION_CHECKBOX_NAME: [str(user.pk)],
                                    "apply": "1", "reason": "chargeback fraud"}, follow=True)
    assert done.status_code == 200
    assert b"FREEZE_WALLET enqueued for 1 wallet" in done.content
    command = OutboxCommand.objects.get()
    assert (command.command_type, command.payload["reason"], command.requested_by) == (
        CommandType.FREEZE_WALLET, "chargeback fraud", operator)


def test_the_admin_says_why_a_wallet_cannot_be_frozen_or_unfrozen(client, holder, operator):
    active, frozen = holder(), holder(ProfileStatus.FROZEN)
    client.force_login(operator)
    response = client.post(CHANGELIST, {"action": "freeze_selected", ACTION_CHECKBOX_NAME: [str(active.pk),
                                                                                          str(frozen.pk)],
                                        "apply": "1", "reason": "audit"}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any(m.startswith(f"{frozen.email}: Only ACTIVE wallets can be frozen") for m in shown), shown
    assert list(OutboxCommand.objects.values_list("aggregate_id", flat=True)) == [active.pk.hex]

    response = client.post(CHANGELIST, {"action": "unfreeze_selected", ACTION_CHECKBOX_NAME: [str(active.pk),
                                                                                            str(frozen.pk)]},
                           follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any(m.startswith(f"{active.email}: Only FROZEN wallets can be unfrozen") for m in shown), shown
    unfreeze = OutboxCommand.objects.get(command_type=CommandType.UNFREEZE_WALLET)
    assert unfreeze.aggregate_id == frozen.pk.hex and unfreeze.requested_by == operator


def test_the_wallet_list_shows_balances_and_statuses(client, holder, operator):
    user = holder()
    client.force_login(operator)
    page = client.get(CHANGELIST, {"q": user.email})
    assert page.status_code == 200
    assert b"500.000000" in page.content and b"ACTIVE" in page.content
