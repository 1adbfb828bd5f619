"""Routes of the read side, included under ``api/v1/``."""

from django.urls import path

from projector import apis

urlpatterns = [
    path("users/<uuid:user_id>/wallet", apis.WalletApi.as_view(), name="users-wallet"),
    path("users/<uuid:user_id>/transactions", apis.TransactionListApi.as_view(), name="users-transactions"),
]
