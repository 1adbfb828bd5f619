"""JWTs: simplejwt tokens whose claims carry the user id (``user_id``), the role (``role``) and the session
version (``session_version``)."""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken, Token

from identity.models import User

SESSION_VERSION_CLAIM = "session_version"


class GxTokenObtainPairSerializer(TokenObtainPairSerializer):
    """The project's token serializer (``SIMPLE_JWT["TOKEN_OBTAIN_SERIALIZER"]``).

    ``user_id`` is added by simplejwt (``USER_ID_CLAIM``); ``role`` is ``admin`` for staff, else ``user``;
    ``session_version`` is the user's at issue. The access token is derived from the refresh token and copies
    the claims; a refresh mints both from the database row again (``identity.services.auth_refresh``).
    """

    @classmethod
    def get_token(cls, user: User) -> RefreshToken:
        token = super().get_token(user)
        token["role"] = user.role
        token[SESSION_VERSION_CLAIM] = user.session_version
        return token


def session_is_current(token: Any, user: User) -> bool:
    """False for a token issued before the user's last password change or deactivation.

    Tokens issued before the claim existed carry none and count as version 0 (valid until the first change).
    """
    return token.get(SESSION_VERSION_CLAIM, 0) == user.session_version


def tokens_for(user: User) -> dict[str, str]:
    """A fresh refresh token (recorded as outstanding, so it can be blacklisted) and its access token."""
    refresh = GxTokenObtainPairSerializer.get_token(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def token_user_id(token: Token) -> uuid.UUID:
    """The token's ``user_id`` claim as a UUID; a missing or malformed claim is ``InvalidToken`` (401).

    Only our key signs tokens, but a claim is still checked before it reaches a query: a signed token with
    ``"user_id": "x"`` (another issuer's format, a bug, a leaked key) must be a 401, not a database error.
    """
    value = token.payload.get(api_settings.USER_ID_CLAIM)
    try:
        if not isinstance(value, str):
            raise ValueError
        return uuid.UUID(value)
    except ValueError:
        raise InvalidToken("Token contained no recognizable user identification") from None

