"""The money API: a user's wallet and transaction history (owner or staff; anyone else gets 404, as if it did
not exist) and ``POST /api/v1/transfers`` (202 + the command to follow).

Amounts are strings of integer qirat (``balance_qirat``) with the GX decimal beside them (``balance``).
"""

from __future__ import annotations

import uuid

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from gxbackend.exceptions import NotFound
from gxbackend.idempotency import idempotent
from gxbackend.schema import ERROR_RESPONSE, IDEMPOTENCY_KEY
from identity.models import UserProfile
from identity.serializers import StrictInputSerializer
from projector import transfers
from projector.models import Transaction, TransactionKind, Wallet
from projector.selectors import gx, transactions_for_user, wallet_for_user


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

    class Meta:
        model = Wallet
        fields = ("user_id", "balance_qirat", "balance", "held_qirat", "held", "available_qirat", "available",
                  "frozen", "frozen_reason", "created_at", "updated_at")

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


class TransactionCursorPagination(CursorPagination):
    ordering = "-id"  # chain order: rows are inserted block by block, in transaction order
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class WalletApi(APIView):
    @extend_schema(operation_id="users_wallet_retrieve", summary="A user's wallet (projected from the chain)",
                   responses={200: WalletOutputSerializer, 401: ERROR_RESPONSE,
                              404: ERROR_RESPONSE}, tags=["wallets"])
    def get(self, request: Request, user_id: uuid.UUID) -> Response:
        wallet = wallet_for_user(user_id=_visible_user(request, user_id))
        profile = UserProfile.objects.filter(user_id=wallet.user_id).first()
        held = transfers.held_by_transfers_in_flight(profile)[0] if profile is not None else 0
        return Response(WalletOutputSerializer(wallet, context={"held_qirat": held}).data)


class TransactionListApi(ListAPIView):
    serializer_class = TransactionOutputSerializer
    pagination_class = TransactionCursorPagination

    @extend_schema(
        operation_id="users_transactions_list", summary="A user's transactions, newest first",
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=TransactionKind.values),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="block time at or after"),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="block time before"),
        ],
        responses={200: TransactionOutputSerializer(many=True), 400: ERROR_RESPONSE,
                   401: ERROR_RESPONSE, 404: ERROR_RESPONSE},
        tags=["wallets"],
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        user_id = _visible_user(self.request, self.kwargs["user_id"])
        filters = TransactionFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return transactions_for_user(user_id=user_id, **filters.validated_data)


# --- POST /api/v1/transfers ------------------------------------------------------------------------------
class TransferThrottle(SimpleRateThrottle):
    """Transfers per authenticated user (rate ``transfer`` of DEFAULT_THROTTLE_RATES, read at request time)."""

    scope = "transfer"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None  # refused by authentication anyway
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TransferInputSerializer(StrictInputSerializer):
    to_user_id = serializers.UUIDField(required=False, help_text="The recipient's profile id (or give to_email).")
    to_email = serializers.EmailField(required=False, max_length=254, help_text="The recipient's email.")
    amount = serializers.CharField(required=False, trim_whitespace=False, max_length=40,
                                   help_text='GX as a decimal string, at most 6 decimals, > 0 (e.g. "12.5"); '
                                             "or give amount_qirat.")
    amount_qirat = serializers.CharField(required=False, trim_whitespace=False, max_length=20,
                                         help_text='Qirat as an integer string (1 GX = 1,000,000 qirat), e.g. '
                                                   '"12500000".')
    remark = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False,
                                   max_length=transfers.REMARK_MAX, default="", help_text="At most 140 characters.")

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


class TransferApi(APIView):
    throttle_classes = [TransferThrottle]

    @extend_schema(
        operation_id="transfers_create", summary="Send GX to another user (202: follow the command)",
        description="Checks what a user would expect (recipient active, not yourself, no frozen wallet, amount + "
                    "fee within your projected balance) and enqueues the transfer for the chain, which has the "
                    "last word: a refusal there turns the command FAILED with the chaincode's code. Fee: 0 below "
                    "3 GX, 0.05 % from 3 to 100 GX, 0.1 % above; 0.15 % between different nationalities.",
        request=TransferInputSerializer,
        responses={202: TransferOutputSerializer,
                   **{code: ERROR_RESPONSE for code in (400, 401, 403, 404, 409, 422, 429)}},
        parameters=[_IDEMPOTENCY_KEY],
        examples=[OpenApiExample("by email, in GX", request_only=True,
                                 value={"to_email": "bola@example.com", "amount": "12.5", "remark": "rent"})],
        tags=["transfers"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = TransferInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        accepted = transfers.transfer_request(
            sender=request.user, **serializer.validated_data,
            idempotency_key=request.idempotency_key, request_id=getattr(request, "request_id", "") or "",
        )
        return Response(TransferOutputSerializer(accepted).data, status=status.HTTP_202_ACCEPTED)
