"""Drops the ``varchar_pattern_ops`` index Django adds on PostgreSQL beside the unique index of a CharField.

It serves ``LIKE 'prefix%'`` lookups, which nothing makes on ``idempotency_key`` (the admin's search on it is an
exact match), yet every INSERT and every update the submitter makes to a command (three per command: the lease,
the envelope, the outcome; none of them HOT, since each changes an indexed column or its row's page is full) had
to insert into it. A later migration that alters the field would add it again: drop it again then.
"""

from django.db import migrations

INDEX = "outbox_outboxcommand_idempotency_key_67ab2f2b_like"


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON outbox_outboxcommand (idempotency_key varchar_pattern_ops)")


class Migration(migrations.Migration):
    dependencies = [("outbox", "0003_lease_token")]

    operations = [migrations.RunPython(drop, create, elidable=False)]
