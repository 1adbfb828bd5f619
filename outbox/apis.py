"""``GET /api/v1/commands/<command_id>``: follow a write to the chain (owner or staff; anyone else gets 404)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gxbackend.schema import ERROR_RESPONSE
from outbox.models import CommandStatus, CommandType, OutboxCommand
from outbox.selectors import command_get_for_user


class CommandOutputSerializer(serializers.ModelSerializer):
    command_type = serializers.ChoiceField(choices=CommandType.choices)
    status = serializers.ChoiceField(choices=CommandStatus.choices)
    tx_id = serializers.CharField(allow_null=True, help_text="Fabric transaction id, once endorsed.")
    block_number = serializers.IntegerField(allow_null=True, help_text="Block of the committed transaction.")
    validation_code = serializers.CharField(allow_null=True, help_text="VALID, or why the chain refused it.")
    chaincode_code = serializers.CharField(allow_null=True, help_text="The chaincode's error code ([CODE]).")
    error_message = serializers.CharField(allow_null=True)

    class Meta:
        model = OutboxCommand
        fields = ("command_id", "command_type", "status", "attempts", "tx_id", "block_number", "validation_code",
                  "chaincode_code", "error_message", "created_at", "updated_at", "submitted_at", "committed_at")

    def to_representation(self, instance: OutboxCommand) -> dict:
        data = super().to_representation(instance)
        for name in ("tx_id", "validation_code", "chaincode_code", "error_message"):
            data[name] = data[name] or None
        return data


class CommandDetailApi(APIView):
    @extend_schema(
        operation_id="commands_retrieve",
        summary="Status of a command sent to the chain",
        responses={200: CommandOutputSerializer, 401: ERROR_RESPONSE, 404: ERROR_RESPONSE},
        tags=["commands"],
    )
    def get(self, request: Request, command_id: uuid.UUID) -> Response:
        command = command_get_for_user(command_id=command_id, user=request.user)
        return Response(CommandOutputSerializer(command).data)
