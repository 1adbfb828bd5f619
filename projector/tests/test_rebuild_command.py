"""rebuild_projections over a scripted chain: batches end in the incremental state, it stops at the height read
at its start, and a malformed event stops it with the blocks before it kept."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from projector.models import Checkpoint, Transaction
from projector.services import CHECKPOINT_NAME, apply_block
from projector.tests.conftest import ScriptedNetwork, block, event, snapshot, transfer, user_created

pytestmark = pytest.mark.django_db
COMMAND_MODULE = "projector.management.commands.rebuild_projections"


def two_users_and_transfers(make_user, blocks: int):
    a, b = make_user().pk.hex, make_user().pk.hex
    chain = [block(1, user_created(a), user_created(b))]
    balance_a, balance_b = 500_000_000, 500_000_000
    for number in range(2, blocks + 1):
        balance_a, balance_b = balance_a - 100_000, balance_b + 100_000
        chain.append(block(number, transfer(a, b, 100_000, 0, balance_a, balance_b)))
    return a, b, chain


def rebuild(monkeypatch, network) -> None:
    monkeypatch.setattr(f"{COMMAND_MODULE}.network_from_settings", lambda: network)
    call_command("rebuild_projections", idle_timeout=0.5)


def test_a_rebuild_equals_applying_every_block_in_turn(make_user, monkeypatch):
    _, _, chain = two_users_and_transfers(make_user, 300)
    for b in chain:
        apply_block(b)
    incremental = snapshot()
    rebuild(monkeypatch, ScriptedNetwork(chain, height=301))
    assert snapshot() == incremental
    assert Checkpoint.objects.get(name=CHECKPOINT_NAME).block_number == 301


def test_blocks_committed_after_the_start_are_left_to_run_projector(make_user, monkeypatch):
    a, b, chain = two_users_and_transfers(make_user, 40)
    later = block(41, transfer(b, a, 5_000_000, 2_500, 498_897_500, 501_100_000))
    rebuild(monkeypatch, ScriptedNetwork([*chain, later], height=41))
    assert not Transaction.objects.filter(block_number=41).exists()
    assert Checkpoint.objects.get(name=CHECKPOINT_NAME).block_number == 41  # run_projector reads 41 next


def test_a_malformed_event_stops_the_rebuild_and_keeps_what_came_before(make_user, monkeypatch):
    _, _, chain = two_users_and_transfers(make_user, 20)
    bad = event("TransferWithFeesCompleted", b"{not json")
    chain[10] = block(11, bad)
    with pytest.raises(CommandError, match=r"stopped: .*not JSON"):
        rebuild(monkeypatch, ScriptedNetwork(chain, height=21))
    checkpoint = Checkpoint.objects.get(name=CHECKPOINT_NAME)
    assert checkpoint.block_number == 11 and checkpoint.error
    assert Transaction.objects.filter(block_number__gt=10).count() == 0
    assert Transaction.objects.filter(block_number=10).count() == 2  # SENT and RECEIVED of block 10
