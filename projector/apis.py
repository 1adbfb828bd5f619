"""The money API: a user's wallet and transaction history (owner or staff; anyone else gets 404, as if it did
not exist) and ``POST /api/v1/transfers`` (202 + the command to follow; with ``Prefer: wait=N``, 201 with the
final command and the new wallet once the transfer is visible).

Reads take ``?min_block=N&wait=S`` (a command's ``visible_at_block``): answered once the read models have
applied block N, or after S seconds with ``stale: true`` and the block they have reached.

Amounts are strings of integer qirat (``balance_qirat``) with the GX decimal beside them (``balance``).
"""

from __future__ import annotations

import uuid

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from gxbackend import waits
from gxbackend.exceptions import NotFound
from gxbackend.idempotency import idempotent
from gxbackend.pagination import StrictCursorPagination
from gxbackend.schema import ERROR_RESPONSE, IDEMPOTENCY_KEY
from gxbackend.text import validate_plain_text
from gxbackend.throttling import FailOpenRateThrottle
from identity.models import UserProfile
from identity.serializers import EmailAddressField, StrictInputSerializer
from outbox.apis import CommandOutputSerializer, render_command
from outbox.models import OutboxCommand
from outbox.selectors import command_visible, command_wait_visible
from projector import transfers
from projector.models import Transaction, TransactionKind, Wallet
from projector.selectors import checkpoint_block, gx, transactions_for_user, wait_for_block, wallet_for_user


def _visible_user(request: Request, user_id: uuid.UUID) -> uuid.UUID:
    if request.user.pk != user_id and not request.user.is_staff:
        raise NotFound("Not found.")
    return user_id


class WalletOutputSerializer(serializers.ModelSerializer):
    """The projected wallet; ``held``: what the owner's transfers in flight hold (``context["held_qirat"]``)."""

    user_id = serializers.UUIDField()
    balance_qirat = serializers.SerializerMethodField(help_text="Balance in qirat (1 GX = 1,000,000 qirat).")
    balance = serializers.SerializerMethodField(help_text="Balance in GX, six decimal places.")
    held_qirat = serializers.SerializerMethodField(
        help_text="Amount + fee of this user's transfers not in the balance yet (queued, on their way, or "
                  "committed in a block not projected yet), in qirat.")
    held = serializers.SerializerMethodField(help_text="held_qirat in GX.")
    available_qirat = serializers.SerializerMethodField(
        help_text="What a new transfer may spend, amount + fee: balance - held, in qirat.")
    available = serializers.SerializerMethodField(help_text="available_qirat in GX.")
    checkpoint_block = serializers.SerializerMethodField(
        help_text="The last block the read models have applied (null before the first).")
    stale = serializers.SerializerMethodField(
        help_text="True when min_block was given and the read models have not applied it yet (the wait ended "
                  "first): this wallet may not show that block's effect.")

    class Meta:
        model = Wallet
        fields = ("user_id", "balance_qirat", "balance", "held_qirat", "held", "available_qirat", "available",
                  "frozen", "frozen_reason", "checkpoint_block", "stale", "created_at", "updated_at")

    def get_balance_qirat(self, wallet: Wallet) -> str:
        return str(wallet.balance_qirat)

    def get_balance(self, wallet: Wallet) -> str:
        return gx(wallet.balance_qirat)

    def get_held_qirat(self, wallet: Wallet) -> str:
        return str(self.context["held_qirat"])

    def get_held(self, wallet: Wallet) -> str:
        return gx(self.context["held_qirat"])

    def get_available_qirat(self, wallet: Wallet) -> str:
        return str(wallet.balance_qirat - self.context["held_qirat"])

    def get_available(self, wallet: Wallet) -> str:
        return gx(wallet.balance_qirat - self.context["held_qirat"])

    def get_checkpoint_block(self, wallet: Wallet) -> int | None:
        return self.context["freshness"].checkpoint_block

    def get_stale(self, wallet: Wallet) -> bool:
        return self.context["freshness"].stale


class Freshness:
    """How fresh a read is: the last applied block, and whether the asked ``min_block`` is not reached."""

    def __init__(self, checkpoint_block: int | None, min_block: int | None) -> None:
        self.checkpoint_block = checkpoint_block
        self.stale = min_block is not None and (checkpoint_block is None or checkpoint_block < min_block)


def wait_for_freshness(request: Request) -> tuple[Freshness, waits.Wait]:
    """Validates ``min_block`` / ``wait`` and waits (bounded) until the read models have applied ``min_block``."""
    params = waits.query(waits.FreshnessQuerySerializer, request)
    min_block = params.get("min_block")
    if min_block is None:
        return Freshness(checkpoint_block(), None), waits.Wait(0, declined=False)
    reached, wait = waits.wait_until(params["wait"], lambda seconds: wait_for_block(min_block, timeout=seconds),
                                     lambda checkpoint: checkpoint is not None and checkpoint >= min_block)
    return Freshness(reached, min_block), wait


def render_wallet(user_id: uuid.UUID, freshness: Freshness) -> dict:
    """The wallet of ``user_id`` with what the owner's transfers in flight hold (404 when it has none)."""
    wallet = wallet_for_user(user_id=user_id)
    profile = UserProfile.objects.filter(user_id=wallet.user_id).first()
    held = transfers.held_by_transfers_in_flight(profile)[0] if profile is not None else 0
    return WalletOutputSerializer(wallet, context={"held_qirat": held, "freshness": freshness}).data


class TransactionOutputSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=TransactionKind.choices)
    amount_qirat = serializers.SerializerMethodField()
    amount = serializers.SerializerMethodField(help_text="GX decimal.")
    fee_qirat = serializers.SerializerMethodField()
    fee = serializers.SerializerMethodField(help_text="GX decimal.")

    class Meta:
        model = Transaction
        fields = ("id", "kind", "amount_qirat", "amount", "fee_qirat", "fee", "counterparty_id", "remark", "tx_id",
                  "block_number", "block_time")

    def get_amount_qirat(self, row: Transaction) -> str:
        return str(row.amount_qirat)

    def get_amount(self, row: Transaction) -> str:
        return gx(row.amount_qirat)

    def get_fee_qirat(self, row: Transaction) -> str:
        return str(row.fee_qirat)

    def get_fee(self, row: Transaction) -> str:
        return gx(row.fee_qirat)


class TransactionFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TransactionKind.choices, required=False)
    since = serializers.DateTimeField(required=False, help_text="block time at or after (ISO 8601)")
    until = serializers.DateTimeField(required=False, help_text="block time before (ISO 8601)")


class TransactionCursorPagination(StrictCursorPagination):
    ordering = "-id"  # chain order: rows are inserted block by block, in transaction order
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    freshness: Freshness

    def get_paginated_response(self, data: list) -> Response:
        response = super().get_paginated_response(data)
        response.data["checkpoint_block"] = self.freshness.checkpoint_block
        response.data["stale"] = self.freshness.stale
        return response

    def get_paginated_response_schema(self, schema: dict) -> dict:
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["checkpoint_block"] = {
            "type": "integer", "nullable": True, "description": "The last block the read models have applied."}
        paginated["properties"]["stale"] = {
            "type": "boolean", "description": "True when min_block was given and is not applied yet."}
        paginated["required"] = [*paginated.get("required", ["results"]), "checkpoint_block", "stale"]
        return paginated


_FRESHNESS_DOC = ("With `min_block=N&wait=S` (N: a command's visible_at_block) the read is answered once the read "
                  "models have applied block N, or after S seconds with `stale: true` and the block they have "
                  "reached. When the server holds as many waiting requests as it allows, it answers at once "
                  "with `Retry-After: 1`.")


class WalletApi(APIView):
    @extend_schema(operation_id="users_wallet_retrieve", summary="A user's wallet (projected from the chain)",
                   description=_FRESHNESS_DOC, parameters=[waits.FreshnessQuerySerializer],
                   responses={200: WalletOutputSerializer, 400: ERROR_RESPONSE, 401: ERROR_RESPONSE,
                              404: ERROR_RESPONSE}, tags=["wallets"])
    def get(self, request: Request, user_id: uuid.UUID) -> Response:
        user_id = _visible_user(request, user_id)
        freshness, wait = wait_for_freshness(request)
        return wait.mark(Response(render_wallet(user_id, freshness)))


class TransactionListApi(ListAPIView):
    serializer_class = TransactionOutputSerializer
    pagination_class = TransactionCursorPagination

    @extend_schema(
        operation_id="users_transactions_list", summary="A user's transactions, newest first",
        description=_FRESHNESS_DOC,
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=TransactionKind.values),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="block time at or after"),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="block time before"),
            waits.FreshnessQuerySerializer,
        ],
        responses={200: TransactionOutputSerializer(many=True), 400: ERROR_RESPONSE,
                   401: ERROR_RESPONSE, 404: ERROR_RESPONSE},
        tags=["wallets"],
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        _visible_user(request, self.kwargs["user_id"])  # 404 before any wait
        filters = TransactionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        self.paginator.freshness, wait = wait_for_freshness(request)
        return wait.mark(super().get(request, *args, **kwargs))

    def get_queryset(self):
        user_id = _visible_user(self.request, self.kwargs["user_id"])
        # A plain dict, not the QueryDict: DRF would read an empty value (?until=) as "absent" from a QueryDict;
        # an empty filter is malformed, and the schema says so (date-time, enum).
        filters = TransactionFilterSerializer(data=self.request.query_params.dict())
        filters.is_valid(raise_exception=True)
        return transactions_for_user(user_id=user_id, **filters.validated_data)


# --- POST /api/v1/transfers ------------------------------------------------------------------------------
class TransferThrottle(FailOpenRateThrottle):
    """Transfers per authenticated user (rate ``transfer`` of DEFAULT_THROTTLE_RATES, read at request time);
    lets requests through while the cache is unreachable."""

    scope = "transfer"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None  # refused by authentication anyway
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TransferInputSerializer(StrictInputSerializer):
    to_user_id = serializers.UUIDField(required=False, help_text="The recipient's profile id (or give to_email).")
    to_email = EmailAddressField(required=False, help_text="The recipient's email.")
    amount = serializers.CharField(required=False, trim_whitespace=False, max_length=40,
                                   help_text='GX as a decimal string, at most 6 decimals, > 0 (e.g. "12.5"); '
                                             "or give amount_qirat.")
    amount_qirat = serializers.CharField(required=False, trim_whitespace=False, max_length=20,
                                         help_text='Qirat as an integer string (1 GX = 1,000,000 qirat), e.g. '
                                                   '"12500000".')
    remark = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False,
                                   max_length=transfers.REMARK_MAX, default="", validators=[validate_plain_text],
                                   help_text="At most 140 characters; no control, bidi or only-invisible text.")

    def to_internal_value(self, data: object) -> dict:
        # Amounts must arrive as strings: a JSON number may already have lost precision (floats, JS clients).
        errors = {}
        if isinstance(data, dict):
            for name in ("amount", "amount_qirat"):
                if name in data and not isinstance(data[name], str):
                    errors[name] = ["Must be a string (amounts are never sent as JSON numbers)."]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**exc.detail, **errors}) from exc
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate_amount(self, value: str) -> int:
        try:
            return transfers.parse_gx_amount(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate_amount_qirat(self, value: str) -> int:
        try:
            return transfers.parse_qirat_amount(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, attrs: dict) -> dict:
        errors = {}
        if ("to_user_id" in attrs) == ("to_email" in attrs):
            message = "Give exactly one of to_user_id and to_email."
            errors.update({"to_user_id": [message], "to_email": [message]})
        if ("amount" in attrs) == ("amount_qirat" in attrs):
            message = "Give exactly one of amount and amount_qirat."
            errors.update({"amount": [message], "amount_qirat": [message]})
        if errors:
            raise serializers.ValidationError(errors)
        attrs["amount_qirat"] = attrs.pop("amount", None) or attrs["amount_qirat"]
        return attrs


class TransferOutputSerializer(serializers.Serializer):
    command_id = serializers.UUIDField(source="command.command_id")
    # A CharField, not a ChoiceField: the enum is CommandOutputStatusEnum of GET /commands/:id, and a second
    # "status" enum component would collide in the schema.
    status = serializers.CharField(source="command.status",
                                   help_text="The command's status now: PENDING (first request), SUBMITTED, "
                                             "COMMITTED or FAILED.")
    status_url = serializers.SerializerMethodField(help_text="GET it to follow the transfer to the chain.")
    amount_qirat = serializers.SerializerMethodField()
    amount = serializers.SerializerMethodField(help_text="GX decimal.")
    fee_qirat = serializers.SerializerMethodField(help_text="The fee the chaincode takes on top of the amount.")
    fee = serializers.SerializerMethodField(help_text="GX decimal.")

    def get_status_url(self, accepted: transfers.TransferAccepted) -> str:
        return reverse("command-detail", kwargs={"command_id": accepted.command.command_id})

    def get_amount_qirat(self, accepted: transfers.TransferAccepted) -> str:
        return str(accepted.amount_qirat)

    def get_amount(self, accepted: transfers.TransferAccepted) -> str:
        return gx(accepted.amount_qirat)

    def get_fee_qirat(self, accepted: transfers.TransferAccepted) -> str:
        return str(accepted.fee_qirat)

    def get_fee(self, accepted: transfers.TransferAccepted) -> str:
        return gx(accepted.fee_qirat)


_IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_KEY.name, IDEMPOTENCY_KEY.type, IDEMPOTENCY_KEY.location, required=False,
    description=IDEMPOTENCY_KEY.description + " The key also becomes the chaincode's idempotencyKey (scoped to "
                "the sender), so the transfer moves funds at most once.",
)


_PREFER = OpenApiParameter(
    "Prefer", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="`wait=N` (RFC 7240; seconds, capped at the server's limit): hold the request until the transfer "
                "is final and visible in the read models, then answer 201 with the final command and the "
                "sender's new wallet; if N seconds pass first, 202 as without it. `Preference-Applied: wait=N` "
                "in the response says the server honoured it; without it (and with `Retry-After: 1`) the server "
                "held as many waiting requests as it allows and answered at once. Other preferences are ignored.",
)


class TransferDoneOutputSerializer(TransferOutputSerializer):
    """201 with ``Prefer: wait``: the transfer as in the 202, plus the final command and the sender's wallet."""

    command = CommandOutputSerializer(help_text="The command, final (COMMITTED or FAILED) and visible.")
    wallet = WalletOutputSerializer(help_text="The sender's wallet with this transfer applied (unchanged when "
                                              "it FAILED).")


class TransferApi(APIView):
    throttle_classes = [TransferThrottle]

    @extend_schema(
        operation_id="transfers_create", summary="Send GX to another user (202: follow the command)",
        description="Checks what a user would expect (recipient active, not yourself, no frozen wallet, amount + "
                    "fee within your projected balance) and enqueues the transfer for the chain, which has the "
                    "last word: a refusal there turns the command FAILED with the chaincode's code. Fee: 0 below "
                    "3 GX, 0.05 % from 3 to 100 GX, 0.1 % above; 0.15 % between different nationalities. "
                    "With `Prefer: wait=N`: 201 with the final command and the new wallet once visible.",
        request=TransferInputSerializer,
        responses={201: TransferDoneOutputSerializer, 202: TransferOutputSerializer,
                   **{code: ERROR_RESPONSE for code in (400, 401, 403, 404, 409, 422, 429)}},
        parameters=[_IDEMPOTENCY_KEY, _PREFER],
        examples=[OpenApiExample("by email, in GX", request_only=True,
                                 value={"to_email": "bola@example.com", "amount": "12.5", "remark": "rent"})],
        tags=["transfers"],
    )
    def post(self, request: Request) -> Response:
        response = self.accept(request)
        seconds = waits.prefer_wait(request)
        if response.status_code != status.HTTP_202_ACCEPTED or seconds is None:
            return response
        # After accept(): its transaction (with the Idempotency-Key record) is committed, so the submitter can
        # see the command; the wait holds no lock and no transaction.
        command = OutboxCommand.objects.get(command_id=response.data["command_id"])
        checkpoint, wait = waits.wait_until(seconds, lambda s: command_wait_visible(command, timeout=s),
                                            lambda checkpoint: command_visible(command, checkpoint))
        if command_visible(command, checkpoint):
            body = {**response.data, "status": command.status, "command": render_command(command, checkpoint),
                    "wallet": render_wallet(request.user.pk, Freshness(checkpoint, None))}
            done = Response(body, status=status.HTTP_201_CREATED)
            for header in ("Idempotent-Replayed",):
                if header in response:
                    done[header] = response[header]
            done["Location"] = body["status_url"]
            response = done
        else:
            response.data["status"] = command.status
        if not wait.declined:
            response["Preference-Applied"] = f"wait={seconds}"
        return wait.mark(response)

    @idempotent
    def accept(self, request: Request) -> Response:
        """The transfer as without ``Prefer``: 202 and the command (stored for its Idempotency-Key)."""
        serializer = TransferInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        accepted = transfers.transfer_request(
            sender=request.user, **serializer.validated_data,
            idempotency_key=request.idempotency_key, request_id=getattr(request, "request_id", "") or "",
        )
        return Response(TransferOutputSerializer(accepted).data, status=status.HTTP_202_ACCEPTED)
