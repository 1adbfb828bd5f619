"""rebuild_projections on a devnet chain of 10,000 events equals the incremental projection."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.core.management import call_command

from identity.models import ProfileStatus, User, UserProfile
from projector.models import Transaction
from projector.tests.conftest import catch_up, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_rebuild_of_a_10000_event_chain_equals_incremental_and_balances_reconcile(chain, projector):
    ids = [uuid.uuid4() for _ in range(10_000)]
    User.objects.bulk_create([User(id=i, email=f"{i.hex}@example.com", password="!") for i in ids])
    UserProfile.objects.bulk_create([
        UserProfile(user_id=i, first_name="A", last_name="B", date_of_birth=datetime.date(1990, 1, 1),
                    nationality="NG", status=ProfileStatus.APPROVED_PENDING_ONCHAIN) for i in ids])
    users = list(User.objects.filter(id__in=ids))
    chain.create_users(users)
    catch_up(projector, chain, timeout=300)
    assert Transaction.objects.filter(kind="GENESIS").count() == 10_000
    projector.close()
    incremental = snapshot()
    call_command("rebuild_projections", idle_timeout=2.0)
    assert snapshot() == incremental
    call_command("reconcile_balances")
