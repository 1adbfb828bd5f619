"""apply_blocks (several queued blocks in one transaction): the same end state as apply_block block by block."""

from __future__ import annotations

import time

import pytest

from projector import services
from projector.models import Checkpoint, ProjectedBlock, Transaction, Wallet
from projector.services import CHECKPOINT_NAME, apply_block, apply_blocks, reset_projections
from projector.tests.conftest import block, event, frozen, snapshot, transfer, unfrozen, user_created

pytestmark = pytest.mark.django_db


def chain_of(alice, bob, carol) -> list:
    a, b, c = alice.pk.hex, bob.pk.hex, carol.pk.hex
    return [
        block(1, user_created(a), user_created(b)),
        block(2, transfer(a, b, 5_000_000, 2_500, 494_997_500, 505_000_000)),
        block(3),  # no events
        block(4, frozen(b, "court order"), user_created(c), transfer(a, c, 2_000_000, 0, 492_997_500, 502_000_000)),
        block(5, unfrozen(b), transfer(b, a, 1_000_000, 0, 504_000_000, 493_997_500), frozen(c, "again")),
        block(6, event("SomethingNew", {"v": 1}), transfer(c, b, 3_000_000, 1_500, 498_998_500, 507_000_000)),
    ]


def checkpoint() -> tuple[int, str]:
    cp = Checkpoint.objects.get(name=CHECKPOINT_NAME)
    return cp.block_number, cp.transaction_id


def test_a_batch_ends_where_block_by_block_ends(make_user):
    blocks = chain_of(make_user(), make_user(), make_user())
    for b in blocks:
        apply_block(b)
    one_by_one = snapshot()
    assert checkpoint() == (7, "")
    reset_projections()  # keeps ProjectedBlock: the same block times
    time.sleep(0.01)
    results = apply_blocks(blocks)
    assert [r.block_number for r in results] == [1, 2, 3, 4, 5, 6]
    assert [r.applied for r in results] == [2, 1, 0, 3, 3, 1]
    assert results[-1].skipped == {"SomethingNew": 1}
    assert snapshot() == one_by_one
    assert checkpoint() == (7, "")
    # Replaying the batch changes nothing, with or without the checkpoint's protection.
    assert all(r.already_applied for r in apply_blocks(blocks))
    Checkpoint.objects.filter(name=CHECKPOINT_NAME).update(block_number=0)
    apply_blocks(blocks)
    assert snapshot() == one_by_one


def test_a_batch_written_partly_before_falls_back_to_on_conflict(make_user):
    blocks = chain_of(make_user(), make_user(), make_user())
    apply_blocks(blocks[:3])
    Checkpoint.objects.filter(name=CHECKPOINT_NAME).update(block_number=2)  # block 2 applied, checkpoint behind
    apply_blocks(blocks[1:])
    assert checkpoint() == (7, "")
    assert Transaction.objects.count() == 2 + 3 + (1 + 2) + 2 + 3
    assert set(Transaction.objects.values_list("block_number", flat=True)) == {1, 2, 4, 5, 6}
    assert ProjectedBlock.objects.count() == 5


def test_a_malformed_event_in_block_k_commits_what_is_before_it_and_nothing_after(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    good = transfer(alice.pk.hex, bob.pk.hex, 5_000_000, 2_500, 494_997_500, 505_000_000)
    bad = event("UserCreated", {"v": 1, "userId": carol.pk.hex, "nationality": "NG"})  # no amounts
    blocks = [block(1, user_created(alice.pk.hex), user_created(bob.pk.hex)), block(2, good, bad),
              block(3, user_created(carol.pk.hex))]
    results = apply_blocks(blocks)
    assert [r.block_number for r in results] == [1, 2]
    assert results[-1].malformed is not None and results[-1].malformed.event.transaction_id == bad.transaction_id
    assert checkpoint() == (2, good.transaction_id)
    cp = Checkpoint.objects.get(name=CHECKPOINT_NAME)
    assert cp.error_tx_id == bad.transaction_id and "missing field 'genesisAmount'" in cp.error
    assert Wallet.objects.get(pk=alice.pk).balance_qirat == 494_997_500
    assert not Wallet.objects.filter(pk=carol.pk).exists()
    # Retrying stays stuck at the same event and doubles nothing.
    assert apply_blocks(blocks[1:])[-1].malformed is not None
    assert checkpoint() == (2, good.transaction_id)
    assert Transaction.objects.count() == 2 + 3


def test_a_malformed_first_event_of_a_later_block_checkpoints_at_that_block(make_user):
    alice = make_user()
    bad = event("WalletFrozen", b"not json")
    results = apply_blocks([block(1, user_created(alice.pk.hex)), block(2), block(4, bad)])
    assert results[-1].malformed is not None
    assert checkpoint() == (4, "")
    assert Wallet.objects.filter(pk=alice.pk).exists()


@pytest.mark.parametrize("point", ["before_commit", "mid_block"])
def test_the_crash_hook_block_starts_its_own_transaction(make_user, settings, monkeypatch, point):
    class Killed(Exception):
        pass

    def kill(pid, sig):
        raise Killed

    settings.DEBUG = True
    monkeypatch.setenv(services.CRASH_ENV, f"{point}:2")
    monkeypatch.setattr(services.os, "kill", kill)
    alice, bob = make_user(), make_user()
    blocks = [block(1, user_created(alice.pk.hex)), block(2, user_created(bob.pk.hex)),
              block(3, transfer(alice.pk.hex, bob.pk.hex, 2_000_000, 0, 498_000_000, 502_000_000))]
    with pytest.raises(Killed):
        apply_blocks(blocks)
    assert checkpoint() == (2, "")  # block 1 committed, block 2 (and what follows in its batch) rolled back
    assert set(Transaction.objects.values_list("block_number", flat=True)) == {1}
    assert not Wallet.objects.filter(pk=bob.pk).exists()


def test_prepared_blocks_apply_like_raw_ones_and_a_partly_applied_one_is_folded_again(make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    blocks = chain_of(alice, bob, carol)
    for b in blocks:
        apply_block(b)
    expected = snapshot()
    reset_projections()
    results = apply_blocks([services.prepare_block(b) for b in blocks])
    assert [r.applied for r in results] == [2, 1, 0, 3, 3, 1]
    assert snapshot() == expected and checkpoint() == (7, "")

    reset_projections()
    apply_blocks(blocks[:3])
    first = blocks[3].events[0]
    apply_block(block(4, first))  # the stream stopped after the first event of block 4
    Checkpoint.objects.filter(name=CHECKPOINT_NAME).update(block_number=4, transaction_id=first.transaction_id)
    results = apply_blocks([services.prepare_block(b) for b in blocks[3:]])
    assert results[0].applied == 2  # only the two events after the checkpoint's transaction
    assert snapshot() == expected and checkpoint() == (7, "")


def test_a_prepared_malformed_block_stops_at_the_same_event(make_user):
    alice, bob = make_user(), make_user()
    good = user_created(alice.pk.hex)
    bad = event("UserCreated", b"[1]")
    prepared = services.prepare_block(block(3, good, bad, user_created(bob.pk.hex)))
    assert isinstance(prepared, services.PreparedBlock) and prepared.malformed is not None
    result = apply_blocks([prepared])[-1]
    assert result.malformed is prepared.malformed
    assert checkpoint() == (3, good.transaction_id)
    assert Wallet.objects.filter(pk=alice.pk).exists() and not Wallet.objects.filter(pk=bob.pk).exists()
