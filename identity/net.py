"""The client's IP address, as the login lockout and the throttles see it."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """``REMOTE_ADDR``, or the ``X-Forwarded-For`` entry added by the outermost of our trusted proxies.

    With ``TRUSTED_PROXY_COUNT = n`` the last *n* entries of ``X-Forwarded-For`` were written by proxies we run;
    the n-th from the right is the address the outermost one saw. Entries further left are whatever the client
    sent and are never trusted. With ``n = 0`` the header is ignored altogether (DRF's ``NUM_PROXIES`` rule, so
    the throttles and the lockout agree on who the client is).
    """
    remote_addr = request.META.get("REMOTE_ADDR", "")
    trusted = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if trusted == 0 or not forwarded:
        return remote_addr
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    if not entries:
        return remote_addr
    return entries[-min(trusted, len(entries))]
