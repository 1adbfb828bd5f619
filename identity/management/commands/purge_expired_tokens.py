"""``manage.py purge_expired_tokens``: forget refresh-token rows whose token has expired.

Every login and every refresh records an ``OutstandingToken`` (and a rotation or a logout a ``BlacklistedToken``),
which simplejwt never deletes. Once a token has expired it is refused on its own, so neither row is needed any
more. Rows go in batches, each its own short transaction, so the table is never locked for long and memory stays
bounded however many rows there are. A token counts as expired once its ``exp`` is older than the verification
leeway (``SIMPLE_JWT["LEEWAY"]``): before that a blacklisted token would still verify, and its blacklist row must
stay (simplejwt's own ``flushexpiredtokens`` deletes it at ``exp``). Run it daily (the
``gxbackend-purge-expired-tokens`` CronJob in ``deploy/``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken


def _leeway() -> timedelta:
    leeway = api_settings.LEEWAY
    return leeway if isinstance(leeway, timedelta) else timedelta(seconds=leeway)


class Command(BaseCommand):
    help = "Delete outstanding and blacklisted refresh-token rows whose token has expired."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, default=5000, help="rows deleted per transaction")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        expired = OutstandingToken.objects.filter(expires_at__lte=timezone.now() - _leeway()).order_by()
        if options["dry_run"]:
            self.stdout.write(f"{expired.count()} expired token row(s) would be deleted")
            return
        outstanding = blacklisted = 0
        while ids := list(expired.values_list("pk", flat=True)[:batch_size]):
            with transaction.atomic():
                blacklisted += BlacklistedToken.objects.filter(token_id__in=ids).delete()[0]
                outstanding += OutstandingToken.objects.filter(pk__in=ids).delete()[0]
        self.stdout.write(f"deleted {outstanding} expired outstanding token(s) and {blacklisted} blacklist entr(ies)")
