"""End to end on PostgreSQL with devnet: chain transactions in, read models out (docs/CHAINCODE.md table)."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from identity.models import ProfileStatus, UserProfile
from projector.models import Transaction, Wallet
from projector.tests.conftest import catch_up, snapshot

pytestmark = pytest.mark.django_db


def kinds(user) -> list[str]:
    return list(Transaction.objects.filter(wallet_id=user.pk).order_by("id").values_list("kind", flat=True))


def test_create_user_on_chain_makes_the_profile_active_with_a_wallet_and_one_genesis_row(
        make_user, chain, projector):
    alice = make_user()
    chain.create_user(alice)
    catch_up(projector, chain)
    profile = UserProfile.objects.get(pk=alice.pk)
    assert profile.status == ProfileStatus.ACTIVE and profile.onchain_registered_at is not None
    assert Wallet.objects.get(pk=alice.pk).balance_qirat == 500_000_000
    assert kinds(alice) == ["GENESIS"]
    call_command("reconcile_balances")


def test_transfers_and_freezes_project_as_the_contract_says(make_user, chain, projector):
    alice, bob, carl = make_user(), make_user(), make_user(nationality="DE")
    chain.create_user(alice)
    chain.create_user(bob)
    chain.create_user(carl, nationality="DE")
    sent = chain.transfer(alice, bob, 150_000_007, remark="big")
    chain.transfer(bob, alice, 2_000_000)  # under 3 GX: no fee
    chain.transfer(alice, carl, 1_000_000)  # cross-border: 15 bps
    chain.freeze(bob, "court order")
    catch_up(projector, chain)
    assert Wallet.objects.get(pk=alice.pk).balance_qirat == 500_000_000 - 150_000_007 - 150_000 + 2_000_000 \
        - 1_000_000 - 1_500
    assert Wallet.objects.get(pk=bob.pk).balance_qirat == int(sent["toBalance"]) - 2_000_000
    assert kinds(alice) == ["GENESIS", "SENT", "FEE", "RECEIVED", "SENT", "FEE"]
    assert kinds(bob) == ["GENESIS", "RECEIVED", "SENT"]
    fee_row = Transaction.objects.get(wallet_id=alice.pk, kind="FEE", amount_qirat=150_000)
    assert fee_row.tx_id == Transaction.objects.get(wallet_id=bob.pk, kind="RECEIVED").tx_id
    bob_wallet = Wallet.objects.get(pk=bob.pk)
    assert (bob_wallet.frozen, bob_wallet.frozen_reason) == (True, "court order")
    assert UserProfile.objects.get(pk=bob.pk).status == ProfileStatus.FROZEN
    chain.unfreeze(bob)
    catch_up(projector, chain)
    assert UserProfile.objects.get(pk=bob.pk).status == ProfileStatus.ACTIVE
    assert Wallet.objects.get(pk=bob.pk).frozen is False
    call_command("reconcile_balances")


def test_a_replayed_transfer_changes_nothing(make_user, chain, projector):
    alice, bob = make_user(), make_user()
    chain.create_user(alice)
    chain.create_user(bob)
    chain.transfer(alice, bob, 5_000_000, key="order-42")
    catch_up(projector, chain)
    before = snapshot()
    replay = chain.transfer(alice, bob, 5_000_000, key="order-42")
    assert replay["replayed"] is True
    catch_up(projector, chain)
    assert snapshot() == before
    call_command("reconcile_balances")


def test_reconcile_balances_lists_a_wallet_that_differs_from_the_chain(make_user, chain, projector):
    alice = make_user()
    chain.create_user(alice)
    catch_up(projector, chain)
    Wallet.objects.filter(pk=alice.pk).update(balance_qirat=1)
    with pytest.raises(Exception, match="1 of 1 wallets differ"):
        call_command("reconcile_balances")


def test_rebuild_ends_in_the_state_incremental_projection_gave(make_user, chain, projector):
    alice, bob = make_user(), make_user()
    chain.create_user(alice)
    chain.create_user(bob)
    chain.transfer(alice, bob, 7_000_000)
    chain.freeze(alice)
    catch_up(projector, chain)
    projector.close()  # rebuild refuses to run beside a leader
    incremental = snapshot()
    call_command("rebuild_projections", idle_timeout=1.0)
    assert snapshot() == incremental
