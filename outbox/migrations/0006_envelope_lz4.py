"""Signed envelopes (about 3 KB each, stored before every Submit) are compressed with lz4 instead of pglz.

PostgreSQL compresses a value this large on its way to the TOAST table; with pglz that was half the CPU of the
envelope store's row update (measured: 37-40 µs per row with pglz, 16-18 µs with lz4, and the same table size).
Only new values are compressed the new way; stored envelopes stay readable as they are. A catalog change,
taken with a short lock timeout: it must not queue the API's writes behind a long transaction. A server built
without lz4 keeps pglz (a notice, not an error). PostgreSQL only: SQLite stores bytes as they are.
"""

from django.db import migrations

FORWARD = """
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    ALTER TABLE outbox_outboxcommand ALTER COLUMN signed_envelope SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: signed envelopes stay compressed with pglz';
END
$$;
"""
BACKWARD = """
SET LOCAL lock_timeout = '10s';
ALTER TABLE outbox_outboxcommand ALTER COLUMN signed_envelope SET COMPRESSION DEFAULT;
"""


def _on_postgres(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0005_claim_due_index"),
    ]

    operations = [
        migrations.RunPython(_on_postgres(FORWARD), _on_postgres(BACKWARD), elidable=False),
    ]
