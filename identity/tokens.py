"""JWTs: simplejwt tokens whose claims carry the user id (``user_id``) and the role (``role``)."""

from __future__ import annotations

from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.tokens import RefreshToken

from identity.models import User


class GxTokenObtainPairSerializer(TokenObtainPairSerializer):
    """The project's token serializer (``SIMPLE_JWT["TOKEN_OBTAIN_SERIALIZER"]``).

    ``user_id`` is added by simplejwt (``USER_ID_CLAIM``); ``role`` is ``admin`` for staff, else ``user``. The
    access token is derived from the refresh token and copies both claims, also after a refresh.
    """

    @classmethod
    def get_token(cls, user: User) -> RefreshToken:
        token = super().get_token(user)
        token["role"] = user.role
        return token


def tokens_for(user: User) -> dict[str, str]:
    """A fresh refresh token (recorded as outstanding, so it can be blacklisted) and its access token."""
    refresh = GxTokenObtainPairSerializer.get_token(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}
