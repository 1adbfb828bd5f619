"""Routes of the money API (read side and transfers), included under ``api/v1/``."""

from django.urls import path

from projector import apis

urlpatterns = [
    path("users/<uuid:user_id>/wallet", apis.WalletApi.as_view(), name="users-wallet"),
    path("transfers", apis.TransferApi.as_view(), name="transfers"),
    path("users/<uuid:user_id>/transactions", apis.TransactionListApi.as_view(), name="users-transactions"),
]
