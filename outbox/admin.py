from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from gxbackend.counting import EstimatedCountPaginator
from outbox.models import CommandStatus, OutboxCommand
from outbox.services import outbox_requeue


@admin.register(OutboxCommand)
class OutboxCommandAdmin(admin.ModelAdmin):
    """Operators' view of the commands for the chain; FAILED ones can be requeued with a fresh budget."""

    list_display = ("id", "command_type", "aggregate_id", "status", "attempts", "dead_lettered",
                    "chaincode_code", "validation_code", "block_number", "created_at", "updated_at")
    list_filter = ("status", "dead_lettered", "command_type")
    search_fields = ("=command_id", "=aggregate_id", "=tx_id", "=idempotency_key", "=request_id")
    ordering = ("-id",)
    # The table only grows (every command is kept): no full count per page (gxbackend/counting.py).
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ("requeue",)
    exclude = ("signed_envelope",)
    readonly_fields = [f.name for f in OutboxCommand._meta.fields if f.name != "signed_envelope"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # commands come from services, in the caller's transaction

    def has_delete_permission(self, request: HttpRequest, obj: OutboxCommand | None = None) -> bool:
        return False  # the row is the record of what was sent to the chain

    @admin.action(description="Requeue selected FAILED commands (fresh attempt budget)")
    def requeue(self, request: HttpRequest, queryset: QuerySet[OutboxCommand]) -> None:
        ids = list(queryset.filter(status=CommandStatus.FAILED).values_list("id", flat=True))
        count = outbox_requeue(command_ids=ids)
        skipped = queryset.count() - len(ids)
        self.message_user(request, f"Requeued {count} command(s)" + (f"; {skipped} not FAILED, left as they are"
                                                                     if skipped else "."), messages.SUCCESS)
