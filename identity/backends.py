"""The admin's authentication backend: the API's login rules behind Django's ``authenticate()``.

One implementation for both logins: the email is looked up by ``email_key`` in the unique
``User.email_canonical`` column (so a look-alike registration can never make the lookup ambiguous), the password
is verified by ``identity.services.auth_verify_credentials`` under the same (email, IP) lockout the API uses
(admin failures count towards it and the other way round), and attempts share the API's per-IP login rate
(``LoginThrottle``). A refusal for the lockout or the rate raises ``PermissionDenied`` (Django then stops asking
other backends) and leaves its message on the request for the login form (``identity.admin.AdminLoginForm``),
as django-axes does; so does the lockout's store (Redis) being unreachable (it fails closed, identity/lockout.py).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.exceptions import Throttled

from identity import services
from identity.lockout import LoginUnavailable
from identity.models import User
from identity.net import client_ip
from identity.throttles import LoginThrottle

REFUSAL_ATTRIBUTE = "gx_login_refusal"


def _check_rate(request: HttpRequest) -> None:
    throttle = LoginThrottle()
    if not throttle.allow_request(request, None):
        raise Throttled(wait=throttle.wait(), detail="Too many login attempts from your address.")


class EmailBackend(ModelBackend):
    """Django's ModelBackend (permissions, ``get_user``) with the API's credential check."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> User | None:
        email = username if username is not None else kwargs.get(User.USERNAME_FIELD)
        if email is None or password is None:
            return None
        try:
            if request is not None:
                _check_rate(request)
            return services.auth_verify_credentials(
                email=email, password=password, client_ip=client_ip(request) if request is not None else None)
        except services.InvalidCredentials:
            return None
        except (Throttled, LoginUnavailable) as exc:  # LoginLocked is a Throttled too
            message = str(exc.detail) if isinstance(exc, Throttled) else exc.message
            if request is not None:
                setattr(request, REFUSAL_ATTRIBUTE, message)
            raise PermissionDenied(message) from exc
