"""Wallet pages half empty (PostgreSQL ``fillfactor = 50``) so balance updates stay on their page.

Every block rewrites the balance of the wallets it touches. With full pages each new row version goes to
another page and adds a primary-key index entry; with room on the page it is a HOT update (no index entry,
the old version pruned in place). Measured alone: a third less server CPU per wallet update (31 -> 21 us in
batches of 9,800 of 10,000 wallets).
"""

from django.db import migrations


def set_fillfactor(apps, schema_editor, value: int | None) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("projector", "Wallet")._meta.db_table)
    if value is None:
        schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    else:
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {value})")


class Migration(migrations.Migration):

    dependencies = [
        ("projector", "0002_transaction_wallet_no_own_index"),
    ]

    operations = [
        migrations.RunPython(lambda apps, editor: set_fillfactor(apps, editor, 50),
                             lambda apps, editor: set_fillfactor(apps, editor, None)),
    ]
