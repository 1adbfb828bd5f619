"""``manage.py outbox_retry ID… | --failed``: requeue FAILED commands with a fresh attempt budget.

IDs are the row id (``#12`` in outbox_status) or the public command id (UUID). A command that still holds a
signed envelope whose outcome is unknown resumes with those bytes (no second transaction); the others get a
new proposal. Note that requeueing a command makes later commands of the same user wait behind it again.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from outbox.models import CommandStatus, OutboxCommand
from outbox.services import outbox_requeue


class Command(BaseCommand):
    help = "Requeue FAILED outbox commands (by id or command id, or all with --failed) with fresh attempts."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("ids", nargs="*", help="row ids or command ids (UUID)")
        parser.add_argument("--failed", action="store_true", help="requeue every FAILED command")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[str] = options["ids"]
        if bool(ids) == options["failed"]:
            raise CommandError("give command ids or --failed (not both)")
        if options["failed"]:
            count = outbox_requeue(failed=True)
        else:
            query = Q()
            for value in ids:
                if value.isdigit():
                    query |= Q(id=int(value))
                else:
                    try:
                        query |= Q(command_id=uuid.UUID(value))
                    except ValueError:
                        raise CommandError(f"not a row id or command id: {value}") from None
            rows = list(OutboxCommand.objects.filter(query).values_list("id", "status"))
            missing = len(ids) - len(rows)
            if missing:
                raise CommandError(f"{missing} of the given commands do not exist")
            not_failed = [pk for pk, status in rows if status != CommandStatus.FAILED]
            if not_failed:
                raise CommandError(f"only FAILED commands can be requeued; not FAILED: {not_failed}")
            count = outbox_requeue(command_ids=[pk for pk, _ in rows])
        self.stdout.write(f"requeued {count} command(s)")
