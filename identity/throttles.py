"""Per-route throttles in the shared cache. Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``.

They fail open when the cache is unreachable (gxbackend/throttling.py).
"""

from __future__ import annotations

from rest_framework.settings import api_settings

from gxbackend.throttling import FailOpenRateThrottle
from identity.net import client_ip


class _ScopeThrottle(FailOpenRateThrottle):
    def get_rate(self) -> str | None:
        # Read at request time (DRF binds the rates at import): an operator's or a test's setting applies.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def get_ident(self, request) -> str:
        return client_ip(request)


class _PerAddressThrottle(_ScopeThrottle):
    """Requests of one scope per client IP (the routes that take no bearer token)."""

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class RegisterThrottle(_PerAddressThrottle):
    """Registrations per client IP."""

    scope = "register"


class LoginThrottle(_PerAddressThrottle):
    """Login attempts per client IP, the API's and the admin's together (the lockout separately limits one email
    from one IP). ``view`` may be None: the admin's backend calls it outside DRF."""

    scope = "login"


class RefreshThrottle(_PerAddressThrottle):
    """Token refreshes per client IP."""

    scope = "refresh"


class LogoutThrottle(_PerAddressThrottle):
    """Logouts (refresh-token revocations) per client IP."""

    scope = "logout"


class KycThrottle(_ScopeThrottle):
    """KYC submissions per authenticated user (per IP when anonymous, which is refused anyway)."""

    scope = "kyc"

    def get_cache_key(self, request, view) -> str:
        ident = str(request.user.pk) if request.user and request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
