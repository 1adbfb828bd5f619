"""apply_block on PostgreSQL with hand-made events: effects, idempotency, malformed events, checkpoints."""

from __future__ import annotations

import pytest

from identity.models import ProfileStatus, UserProfile
from projector.models import Checkpoint, Transaction, Wallet
from projector.services import CHECKPOINT_NAME, apply_block, lag_blocks, reset_projections
from projector.tests.conftest import block, event, frozen, transfer, unfrozen, user_created

pytestmark = pytest.mark.django_db


def rows(user) -> list[tuple]:
    return sorted(Transaction.objects.filter(wallet_id=user.pk).values_list("kind", "amount_qirat", "fee_qirat",
                                                                              "counterparty_id", "tx_id"))


def test_user_created_activates_the_profile_opens_the_wallet_and_writes_one_genesis_row(make_user):
    alice = make_user()
    apply_block(block(3, user_created(alice.pk.hex)))
    profile = UserProfile.objects.get(pk=alice.pk)
    assert profile.status == ProfileStatus.ACTIVE
    assert profile.onchain_registered_at is not None
    assert Wallet.objects.get(pk=alice.pk).balance_qirat == 500_000_000
    assert [r[:2] for r in rows(alice)] == [("GENESIS", 500_000_000)]
    checkpoint = Checkpoint.objects.get(name=CHECKPOINT_NAME)
    assert (checkpoint.block_number, checkpoint.transaction_id) == (4, "")


def test_a_transfer_writes_sent_received_and_fee_rows_and_sets_both_balances(make_user):
    alice, bob = make_user(), make_user()
    apply_block(block(1, user_created(alice.pk.hex), user_created(bob.pk.hex)))
    apply_block(block(2, transfer(alice.pk.hex, bob.pk.hex, 150_000_007, 150_000, 349_850_000 - 7, 650_000_007)))
    assert Wallet.objects.get(pk=alice.pk).balance_qirat == 349_849_993
    assert Wallet.objects.get(pk=bob.pk).balance_qirat == 650_000_007
    assert [r[:4] for r in rows(alice)] == [("FEE", 150_000, 0, ""), ("GENESIS", 500_000_000, 0, "SYSTEM_GENESIS_POOL"),
                                            ("SENT", 150_000_007, 150_000, bob.pk.hex)]
    assert [r[:4] for r in rows(bob)] == [("GENESIS", 500_000_000, 0, "SYSTEM_GENESIS_POOL"),
                                          ("RECEIVED", 150_000_007, 0, alice.pk.hex)]


def test_a_fee_free_transfer_writes_no_fee_row(make_user):
    alice, bob = make_user(), make_user()
    apply_block(block(1, user_created(alice.pk.hex), user_created(bob.pk.hex)))
    apply_block(block(2, transfer(alice.pk.hex, bob.pk.hex, 2_000_000, 0, 498_000_000, 502_000_000)))
    assert [r[0] for r in rows(alice)] == ["GENESIS", "SENT"]


def test_a_replayed_transfer_changes_nothing_but_the_checkpoint(make_user):
    alice, bob = make_user(), make_user()
    apply_block(block(1, user_created(alice.pk.hex), user_created(bob.pk.hex)))
    apply_block(block(2, transfer(alice.pk.hex, bob.pk.hex, 100_000_000, 50_000, 399_950_000, 600_000_000,
                                  key="k1")))
    apply_block(block(3, transfer(alice.pk.hex, bob.pk.hex, 2_000_000, 0, 397_950_000, 602_000_000)))
    before = (rows(alice), rows(bob))
    # The replay carries the original (older) balances: applying them would move money back.
    apply_block(block(4, transfer(alice.pk.hex, bob.pk.hex, 100_000_000, 50_000, 399_950_000, 600_000_000,
                                  key="k1", replayed=True)))
    assert (rows(alice), rows(bob)) == before
    assert Wallet.objects.get(pk=alice.pk).balance_qirat == 397_950_000
    assert Checkpoint.objects.get(name=CHECKPOINT_NAME).block_number == 5


def test_applying_the_same_block_twice_changes_nothing(make_user):
    alice, bob = make_user(), make_user()
    first = block(1, user_created(alice.pk.hex), user_created(bob.pk.hex))
    second = block(2, transfer(alice.pk.hex, bob.pk.hex, 5_000_000, 2_500, 494_997_500, 505_000_000))
    apply_block(first)
    apply_block(second)
    snapshot = (rows(alice), rows(bob), list(Wallet.objects.order_by("pk").values_list("balance_qirat")))
    assert apply_block(first).already_applied
    # Even without the checkpoint's protection, the upserts keyed by (tx id, kind, wallet) hold.
    Checkpoint.objects.filter(name=CHECKPOINT_NAME).update(block_number=2)
    apply_block(second)
    assert (rows(alice), rows(bob), list(Wallet.objects.order_by("pk").values_list("balance_qirat"))) == snapshot


def test_freeze_and_unfreeze_move_the_wallet_and_the_profile(make_user):
    alice = make_user()
    apply_block(block(1, user_created(alice.pk.hex)))
    apply_block(block(2, frozen(alice.pk.hex, "court order")))
    wallet = Wallet.objects.get(pk=alice.pk)
    assert (wallet.frozen, wallet.frozen_reason) == (True, "court order")
    assert UserProfile.objects.get(pk=alice.pk).status == ProfileStatus.FROZEN
    apply_block(block(3, unfrozen(alice.pk.hex)))
    assert Wallet.objects.get(pk=alice.pk).frozen is False
    assert UserProfile.objects.get(pk=alice.pk).status == ProfileStatus.ACTIVE


def test_events_in_one_block_fold_in_order(make_user):
    alice = make_user()
    apply_block(block(1, user_created(alice.pk.hex), frozen(alice.pk.hex), unfrozen(alice.pk.hex),
                      frozen(alice.pk.hex, "again")))
    assert Wallet.objects.get(pk=alice.pk).frozen_reason == "again"
    assert UserProfile.objects.get(pk=alice.pk).status == ProfileStatus.FROZEN


def test_unknown_event_names_are_skipped_and_counted_and_the_checkpoint_advances(make_user):
    alice = make_user()
    result = apply_block(block(1, event("SomethingNew", {"v": 1}), user_created(alice.pk.hex)))
    assert result.skipped == {"SomethingNew": 1}
    assert result.applied == 1
    assert Checkpoint.objects.get(name=CHECKPOINT_NAME).block_number == 2


@pytest.mark.parametrize("payload", [
    b"not json",
    b"[1, 2]",
    {"v": 1, "nationality": "NG", "genesisAmount": "500000000", "balance": "500000000"},
    {"v": 1, "userId": "abc", "nationality": "NG", "genesisAmount": 500000000, "balance": "500000000"},
    {"v": 1, "userId": "abc", "nationality": "NG", "genesisAmount": "-5", "balance": "500000000"},
    {"v": 2, "userId": "abc", "nationality": "NG", "genesisAmount": "5", "balance": "5"},
], ids=["not-json", "not-object", "missing-field", "wrong-type", "negative-amount", "unknown-version"])
def test_a_malformed_event_stops_the_projector_at_that_event(make_user, payload):
    alice, bob = make_user(), make_user()
    good = user_created(alice.pk.hex)
    bad = event("UserCreated", payload)
    after = user_created(bob.pk.hex)
    result = apply_block(block(7, good, bad, after))
    assert result.malformed is not None
    checkpoint = Checkpoint.objects.get(name=CHECKPOINT_NAME)
    # The event before it is applied and checkpointed; the malformed one and everything after wait.
    assert (checkpoint.block_number, checkpoint.transaction_id) == (7, good.transaction_id)
    assert checkpoint.error_tx_id == bad.transaction_id and "malformed UserCreated" in checkpoint.error
    assert Wallet.objects.filter(pk=alice.pk).exists()
    assert not Wallet.objects.filter(pk=bob.pk).exists()
    # Retrying the same block stays stuck and doubles nothing.
    assert apply_block(block(7, good, bad, after)).malformed is not None
    assert Transaction.objects.count() == 1


def test_a_missing_replayed_flag_is_malformed(make_user):
    alice, bob = make_user(), make_user()
    apply_block(block(1, user_created(alice.pk.hex), user_created(bob.pk.hex)))
    bad = transfer(alice.pk.hex, bob.pk.hex, 5, 0, 5, 5)
    payload = bad.payload.replace(b', "replayed": false', b"")
    result = apply_block(block(2, event("TransferWithFeesCompleted", payload)))
    assert result.malformed is not None and "replayed" in result.malformed.reason


def test_events_for_users_unknown_here_leave_the_rest_of_the_block_applied(make_user):
    alice = make_user()
    apply_block(block(1, user_created("trace000000000000000000000000001"), user_created(alice.pk.hex)))
    assert Wallet.objects.count() == 1
    assert Checkpoint.objects.get(name=CHECKPOINT_NAME).block_number == 2


def test_ids_that_only_look_like_a_local_users_are_somebody_elses_and_never_stop_the_projector(make_user):
    # Another organisation's users on the channel: "_" passes int(..., 16) (and uuid.UUID) but not PostgreSQL's
    # uuid parser; upper case parses to the same UUID as one of ours, but is a different user on the chain.
    alice = make_user()
    hex_id = alice.pk.hex
    result = apply_block(block(1, user_created(hex_id[:29] + "_" + hex_id[30:]), user_created(hex_id.upper()),
                               user_created(hex_id)))
    assert result.malformed is None
    assert Wallet.objects.get(pk=alice.pk).balance_qirat == 500_000_000
    assert [r[:2] for r in rows(alice)] == [("GENESIS", 500_000_000)]
    assert Checkpoint.objects.get(name=CHECKPOINT_NAME).block_number == 2


def test_reset_rewinds_the_checkpoint_and_empties_the_read_models(make_user):
    alice = make_user()
    apply_block(block(1, user_created(alice.pk.hex)))
    registered = UserProfile.objects.get(pk=alice.pk).onchain_registered_at
    reset_projections()
    assert not Wallet.objects.exists() and not Transaction.objects.exists()
    assert UserProfile.objects.get(pk=alice.pk).status == ProfileStatus.APPROVED_PENDING_ONCHAIN
    assert Checkpoint.objects.get(name=CHECKPOINT_NAME).block_number == 0
    apply_block(block(1, user_created(alice.pk.hex)))
    # Replaying gives the block the same time it had: a rebuild equals the incremental projection.
    assert UserProfile.objects.get(pk=alice.pk).onchain_registered_at == registered


@pytest.mark.parametrize("height,next_block,lag", [
    (None, 0, None),  # height not polled yet
    (1, 0, 0),  # a fresh chain: only the genesis configuration block, which never carries events
    (5, 0, 4),  # blocks 1-4 not read yet
    (40, 2, 38),
    (7, 7, 0),
    (7, 9, 0),  # height read before the last blocks were applied
])
def test_lag_counts_the_blocks_after_the_checkpoint_but_never_the_genesis_block(height, next_block, lag):
    assert lag_blocks(height=height, block_number=next_block) == lag
