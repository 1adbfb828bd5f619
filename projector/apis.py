"""Wallet and transaction history of a user (owner or staff; anyone else gets 404, as if it did not exist).

Amounts are strings of integer qirat (``balance_qirat``) with the GX decimal beside them (``balance``).
"""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gxbackend.exceptions import NotFound
from projector.models import Transaction, TransactionKind, Wallet
from projector.selectors import gx, transactions_for_user, wallet_for_user


def _visible_user(request: Request, user_id: uuid.UUID) -> uuid.UUID:
    if request.user.pk != user_id and not request.user.is_staff:
        raise NotFound("Not found.")
    return user_id


class WalletOutputSerializer(serializers.ModelSerializer):
    user_id = serializers.UUIDField()
    balance_qirat = serializers.SerializerMethodField(help_text="Balance in qirat (1 GX = 1,000,000 qirat).")
    balance = serializers.SerializerMethodField(help_text="Balance in GX, six decimal places.")

    class Meta:
        model = Wallet
        fields = ("user_id", "balance_qirat", "balance", "frozen", "frozen_reason", "created_at", "updated_at")

    def get_balance_qirat(self, wallet: Wallet) -> str:
        return str(wallet.balance_qirat)

    def get_balance(self, wallet: Wallet) -> str:
        return gx(wallet.balance_qirat)


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


_ERROR = inline_serializer("WalletError", fields={
    "error": inline_serializer("WalletErrorBody", fields={
        "code": serializers.CharField(), "message": serializers.CharField(),
        "fields": serializers.DictField(child=serializers.ListField(child=serializers.CharField())),
    }),
    "request_id": serializers.CharField(allow_null=True),
})


class WalletApi(APIView):
    @extend_schema(operation_id="users_wallet_retrieve", summary="A user's wallet (projected from the chain)",
                   responses={200: WalletOutputSerializer, 401: OpenApiResponse(_ERROR),
                              404: OpenApiResponse(_ERROR)}, tags=["wallets"])
    def get(self, request: Request, user_id: uuid.UUID) -> Response:
        wallet = wallet_for_user(user_id=_visible_user(request, user_id))
        return Response(WalletOutputSerializer(wallet).data)


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
        responses={200: TransactionOutputSerializer(many=True), 400: OpenApiResponse(_ERROR),
                   401: OpenApiResponse(_ERROR), 404: OpenApiResponse(_ERROR)},
        tags=["wallets"],
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        user_id = _visible_user(self.request, self.kwargs["user_id"])
        filters = TransactionFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return transactions_for_user(user_id=user_id, **filters.validated_data)
