"""``GET /api/v1/commands/<command_id>``: follow a write to the chain (owner or staff; anyone else gets 404).

``?wait=<seconds>`` holds the request until the command is final **and** visible in the read models (COMMITTED
in a block the projector has applied, or FAILED), or the wait ends: ``visible`` says which.
"""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gxbackend import waits
from gxbackend.schema import ERROR_RESPONSE
from outbox.models import CommandStatus, CommandType, OutboxCommand
from outbox.selectors import command_get_for_user, command_visible, command_wait_visible, visible_at_block


class CommandOutputSerializer(serializers.ModelSerializer):
    """A command; ``context["checkpoint_block"]``: the last block the read models have applied."""

    command_type = serializers.ChoiceField(choices=CommandType.choices)
    status = serializers.ChoiceField(choices=CommandStatus.choices)
    tx_id = serializers.CharField(allow_null=True, help_text="Fabric transaction id, once endorsed.")
    block_number = serializers.IntegerField(allow_null=True, help_text="Block of the committed transaction.")
    validation_code = serializers.CharField(allow_null=True, help_text="VALID, or why the chain refused it.")
    chaincode_code = serializers.CharField(allow_null=True, help_text="The chaincode's error code ([CODE]).")
    error_message = serializers.CharField(allow_null=True)
    visible = serializers.SerializerMethodField(
        help_text="True when the read models (wallets, transactions, profiles) show the outcome: COMMITTED in a "
                  "block they have applied, or FAILED (which changes nothing).")
    visible_at_block = serializers.SerializerMethodField(
        help_text="Once COMMITTED, its block: pass it as min_block to the wallet and transaction reads to see "
                  "this command's effect. Null before (and for FAILED).")
    checkpoint_block = serializers.SerializerMethodField(
        help_text="The last block the read models have applied (null before the first).")

    class Meta:
        model = OutboxCommand
        fields = ("command_id", "command_type", "status", "attempts", "tx_id", "block_number", "validation_code",
                  "chaincode_code", "error_message", "visible", "visible_at_block", "checkpoint_block",
                  "created_at", "updated_at", "submitted_at", "committed_at")

    def to_representation(self, instance: OutboxCommand) -> dict:
        data = super().to_representation(instance)
        for name in ("tx_id", "validation_code", "chaincode_code", "error_message"):
            data[name] = data[name] or None
        return data

    def get_visible(self, command: OutboxCommand) -> bool:
        return command_visible(command, self.context["checkpoint_block"])

    def get_visible_at_block(self, command: OutboxCommand) -> int | None:
        return visible_at_block(command)

    def get_checkpoint_block(self, command: OutboxCommand) -> int | None:
        return self.context["checkpoint_block"]


def render_command(command: OutboxCommand, checkpoint: int | None) -> dict:
    return CommandOutputSerializer(command, context={"checkpoint_block": checkpoint}).data


class CommandDetailApi(APIView):
    @extend_schema(
        operation_id="commands_retrieve",
        summary="Status of a command sent to the chain (optionally: wait until it is visible)",
        description="With `wait=S` the request is held until the command is final and visible in the read models "
                    "or S seconds have passed, whichever is first; `visible` says which. When the server holds "
                    "as many waiting requests as it allows, it answers at once with `Retry-After: 1`.",
        parameters=[waits.WaitQuerySerializer],
        responses={200: CommandOutputSerializer, 400: ERROR_RESPONSE, 401: ERROR_RESPONSE, 404: ERROR_RESPONSE},
        tags=["commands"],
    )
    def get(self, request: Request, command_id: uuid.UUID) -> Response:
        wanted = waits.query(waits.WaitQuerySerializer, request)["wait"]
        command = command_get_for_user(command_id=command_id, user=request.user)
        checkpoint, wait = waits.wait_until(wanted, lambda seconds: command_wait_visible(command, timeout=seconds),
                                            lambda checkpoint: command_visible(command, checkpoint))
        return wait.mark(Response(render_command(command, checkpoint)))
