"""Bearer-token authentication for every API view: simplejwt's, with the profile joined to the user and the
token's session version checked against the row (a password change or deactivation revokes earlier tokens)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework import exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from identity.models import User
from identity.tokens import session_is_current, token_user_id


class ProfileJWTAuthentication(JWTAuthentication):
    """simplejwt's ``get_user`` (same checks, same errors) loading the profile in the same query.

    User and profile share the primary key, so reading one's own profile then needs no second round trip. The
    session check reads ``session_version`` from that same row: revocation costs no query.
    """

    def get_user(self, validated_token: Any) -> User:
        user_id = token_user_id(validated_token)  # a malformed claim is a 401, never a query
        try:
            user = User.objects.select_related("profile").get(**{api_settings.USER_ID_FIELD: user_id})
        except User.DoesNotExist as exc:
            raise AuthenticationFailed(_("User not found"), code="user_not_found") from exc
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(api_settings.REVOKE_TOKEN_CLAIM) \
                != get_md5_hash_password(user.password):
            raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        if not session_is_current(validated_token, user):
            # DRF's exception, not simplejwt's (whose code the error body would report as authentication_failed).
            raise exceptions.AuthenticationFailed(_("The session has ended (password changed or account "
                                                    "deactivated); log in again."), code="session_revoked")
        return user


class ProfileJWTScheme(SimpleJWTScheme):
    """OpenAPI: simplejwt's bearer scheme, under its own component name (drf-spectacular keys names by class)."""

    target_class = "identity.authentication.ProfileJWTAuthentication"
    name = "jwtAuthProfile"
