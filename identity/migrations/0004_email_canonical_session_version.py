"""One identity per mailbox (``User.email_canonical``, unique) and revocable sessions (``User.session_version``).

The data step fills ``email_canonical`` with :func:`identity.emails.email_key` of every stored email. Rows
stored before the rule existed may alias one another (``ſtaff@example.com`` beside ``staff@example.com``,
``"alice"@…`` beside ``alice@…``): then the migration stops, changes nothing (PostgreSQL runs it in one
transaction) and names the ids of each colliding group, so an operator can decide which account keeps the address
(e.g. deactivate the impostor and give it a placeholder address, or delete it) before running it again.
"""

from collections import defaultdict

from django.db import migrations, models

from identity.emails import email_key


class EmailCollisions(RuntimeError):
    """Existing users whose emails are one identity; the message lists their ids."""


def fill_email_canonical(apps, schema_editor):
    User = apps.get_model("identity", "User")
    groups = defaultdict(list)
    rows = User.objects.order_by("date_joined", "id").values_list("id", "email")
    for user_id, email in rows.iterator(chunk_size=2000):
        groups[email_key(email)].append(user_id)
    collisions = [ids for ids in groups.values() if len(ids) > 1]
    if collisions:
        lines = "\n".join(f"  - {', '.join(str(user_id) for user_id in ids)}" for ids in collisions)
        raise EmailCollisions(
            f"identity.0004 stopped: {len(collisions)} group(s) of existing users have emails that are one identity "
            f"(same email_key; the first id of each group registered first):\n{lines}\n"
            "Nothing was changed. Keep one account per group and give the others another address or delete them, "
            "e.g. in `manage.py shell`: User.objects.filter(pk=\"<id>\").update(email=\"<id>@invalid.invalid\", "
            "is_active=False); then run `manage.py migrate` again.")
    User.objects.bulk_update([User(id=user_id, email_canonical=key) for key, (user_id,) in groups.items()],
                             ["email_canonical"], batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ("identity", "0003_onchain_error"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_canonical",
            field=models.TextField(editable=False, null=True),
        ),
        migrations.RunPython(fill_email_canonical, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="user",
            name="email_canonical",
            field=models.TextField(editable=False, unique=True,
                                   help_text="identity.emails.email_key(email): every lookup by email uses it"),
        ),
        migrations.RemoveConstraint(
            model_name="user",
            name="identity_user_email_ci_unique",
        ),
        migrations.AlterField(
            model_name="user",
            name="email",
            field=models.EmailField(help_text="identity.emails.canonical_email form: lower case, IDNA domain",
                                    max_length=254, unique=True),
        ),
        migrations.AddField(
            model_name="user",
            name="session_version",
            field=models.PositiveIntegerField(
                default=0, editable=False,
                help_text="copied into every token; bumped by a password change or a deactivation, revoking them all"),
        ),
    ]
