"""The email field validates with identity.emails.validate_identity_email (no change to the table)."""

import identity.emails
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('identity', '0004_email_canonical_session_version'),
    ]

    operations = [
        migrations.AlterField(
            model_name='user',
            name='email',
            field=models.EmailField(help_text='identity.emails.canonical_email form: lower case, IDNA domain', max_length=254, unique=True, validators=[identity.emails.validate_identity_email]),
        ),
    ]
