"""The outbox's indexes: which queries each one serves, checked on PostgreSQL's plans for the real queries.

The claim's index holds every user's unfinished commands in enqueue order. The planner believes them few and
once chose it, filtered on aggregate_id, for the per-user queries too (the claim's "first unfinished command of
its user?" probe, a transfer's funds check): a scan of the whole queue, and of every finished row not yet
vacuumed away, per probe (outbox/models.py, Meta.indexes). Its condition now admits only queries that bound
``next_attempt_at``, which per-user queries do not.
"""

from __future__ import annotations

import psycopg
import pytest

from gxbackend.testing import indexes_planned
from outbox.services import outbox_claim_commands

from .conftest import enqueue_create_user, queue_indexes

pytestmark = pytest.mark.django_db


@pytest.fixture
def claim_statements(monkeypatch):
    """``claim()`` → the statements on the outbox one claim ran, with their parameters, whichever cursor ran them
    (the claim runs on psycopg's own cursor, past Django's query capture)."""
    real = psycopg.Cursor.execute

    def claim() -> list[tuple[str, object]]:
        seen: list[tuple[str, object]] = []

        def execute(self, query, params=None, **kwargs):
            if isinstance(query, str) and "outbox_outboxcommand" in query:
                seen.append((query, params))
            return real(self, query, params, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
        try:
            claimed = outbox_claim_commands(worker_id="w1", limit=32, lease_seconds=60)
        finally:
            monkeypatch.setattr(psycopg.Cursor, "execute", real)
        assert claimed
        return seen

    return claim


def test_the_claim_checks_each_user_through_the_per_user_index(claim_statements):
    enqueue_create_user()
    enqueue_create_user()
    planned = [index for sql, params in claim_statements() for index in indexes_planned(sql, params)]
    assert "outbox_unfinished_agg_idx" in planned, planned
    assert len([index for index in planned if index in queue_indexes()]) <= 1, planned  # the walk (a tiny table)


def test_the_claims_per_user_check_never_falls_back_on_the_queue_index(claim_statements):
    enqueue_create_user()
    planned = [index for sql, params in claim_statements()
               for index in indexes_planned(sql, params, without=("outbox_unfinished_agg_idx",))]
    assert len([index for index in planned if index in queue_indexes()]) == 1, planned  # the walk, not the probes


def test_a_stored_envelope_is_compressed_with_lz4():
    from django.db import connection

    from outbox.services import outbox_record_endorsed

    command = enqueue_create_user()
    [claimed] = outbox_claim_commands(worker_id="w1", limit=1)
    envelope = b"".join(n.to_bytes(2, "big") + b"certificate " * 8 for n in range(40))  # ~3.9 KB, compressible
    outbox_record_endorsed(command_id=command.id, worker_id="w1", lease_token=claimed.lease_token, tx_id="a" * 64,
                           envelope=envelope)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_column_compression(signed_envelope), signed_envelope FROM outbox_outboxcommand "
                       "WHERE id = %s", [command.id])
        method, stored = cursor.fetchone()
    assert (method, bytes(stored)) == ("lz4", envelope)
