"""``manage.py outbox_status``: counts by status, the oldest unfinished command's age, the dead letters."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from outbox.selectors import dead_letters, outbox_stats


class Command(BaseCommand):
    help = "Show the outbox: commands by status, oldest pending age, dead letters with their reasons."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=50, help="dead letters to list (newest first)")

    def handle(self, *args: Any, **options: Any) -> None:
        stats = outbox_stats()
        for status, count in stats.by_status.items():
            note = " (estimated)" if status in stats.estimated else ""
            self.stdout.write(f"{status.lower()} = {count}{note}")
        self.stdout.write(f"queue depth = {stats.queue_depth}")
        self.stdout.write(f"oldest pending age = {stats.oldest_pending_age_seconds:.1f} s")
        self.stdout.write(f"dead letters = {stats.dead_letters}")
        for command in dead_letters(options["limit"]):
            reason = command.chaincode_code or command.validation_code or "-"
            self.stdout.write(
                f"  #{command.id} {command.command_id} {command.command_type} aggregate={command.aggregate_id} "
                f"attempts={command.attempts} tx={command.tx_id or '-'} code={reason}: {command.error_message}"
            )
