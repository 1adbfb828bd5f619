"""``manage.py purge_idempotency_records``: forget Idempotency-Key records older than a retention period.

A client retries with the same key within minutes, not weeks; keeping every record forever only grows the
table. Run it daily (e.g. a CronJob). Transfers stay safe past the purge: their key also lives on the outbox
row and in the chaincode's idempotencyKey, which never forget.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from gxbackend.models import IdempotencyRecord


class Command(BaseCommand):
    help = "Delete Idempotency-Key records older than --older-than-hours (default 72)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than-hours", type=int, default=72)
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["older_than_hours"]
        if hours < 1:
            raise CommandError("--older-than-hours must be at least 1")
        old = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - timedelta(hours=hours))
        if options["dry_run"]:
            self.stdout.write(f"{old.count()} record(s) older than {hours} h would be deleted")
            return
        deleted, _ = old.delete()
        self.stdout.write(f"deleted {deleted} idempotency record(s) older than {hours} h")
