"""The claim's index admits only queries that bound ``next_attempt_at`` (see ``OutboxCommand.Meta.indexes``).

Built and dropped CONCURRENTLY on PostgreSQL: the outbox only grows, and a plain CREATE INDEX would block every
enqueue (every API write) while it reads the whole table. The new index exists before the old one goes, so the
claim never runs without one. Other databases (SQLite in development) take the plain operations.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class _ConcurrentlyOnPostgres:
    """``concurrent`` on PostgreSQL; ``plain``, the same operation without CONCURRENTLY, elsewhere."""

    concurrent: type[migrations.operations.base.Operation]
    plain: type[migrations.operations.base.Operation]

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._operation(schema_editor).database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._operation(schema_editor).database_backwards(self, app_label, schema_editor, from_state, to_state)

    def _operation(self, schema_editor):
        return self.concurrent if schema_editor.connection.vendor == "postgresql" else self.plain


class AddIndexConcurrentlyOnPostgres(_ConcurrentlyOnPostgres, AddIndexConcurrently):
    concurrent, plain = AddIndexConcurrently, migrations.AddIndex


class RemoveIndexConcurrentlyOnPostgres(_ConcurrentlyOnPostgres, RemoveIndexConcurrently):
    concurrent, plain = RemoveIndexConcurrently, migrations.RemoveIndex


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("outbox", "0004_drop_idempotency_key_like_index"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="outboxcommand",
            index=models.Index(condition=models.Q(("next_attempt_at__isnull", False),
                                                  ("status__in", ["PENDING", "SUBMITTED"])),
                               fields=["id"], name="outbox_claim_due_idx"),
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name="outboxcommand",
            name="outbox_claimable_idx",
        ),
    ]
