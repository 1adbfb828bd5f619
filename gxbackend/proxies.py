"""Which proxies are believed: by network (``TRUSTED_PROXY_CIDRS``), never by what the client writes.

A request's direct peer is ``REMOTE_ADDR``. Only when that peer is inside a trusted network may it speak for
the client: ``X-Forwarded-For`` is then walked from the right (each proxy appends the address it saw) past
every hop that is itself a trusted proxy, and the first address that is not one is the client; entries further
left were written by the client and are never read. ``X-Forwarded-Proto`` likewise sets the scheme (``https``
for HSTS, secure cookies and CSRF) only when the peer is trusted. With no trusted network (the default), a
client's own forwarding headers change nothing: the API is keyed on the address the TCP connection came from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(address: str) -> IPAddress | None:
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    # An IPv4 client seen through a dual-stack socket (::ffff:198.51.100.7) is that IPv4 client.
    mapped = getattr(parsed, "ipv4_mapped", None)
    return mapped or parsed


def is_trusted_proxy(address: str) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in network for network in settings.TRUSTED_PROXY_CIDRS)


def client_ip(request: HttpRequest) -> str:
    """The client's address, as the login lockout, the throttles and the logs see it (see the module doc)."""
    cached = getattr(request, "_gx_client_ip", None)
    if cached is not None:
        return cached
    address = request.META.get("REMOTE_ADDR", "")
    if is_trusted_proxy(address):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        for entry in reversed(forwarded.split(",")):
            hop = _parse(entry)
            if hop is None:
                break  # a malformed hop: keep the last address a trusted proxy vouched for
            address = str(hop)
            if not is_trusted_proxy(address):
                break
    request._gx_client_ip = address  # type: ignore[attr-defined]
    return address


class TrustedProxyMiddleware:
    """Takes the scheme from ``X-Forwarded-Proto`` only when the direct peer is a trusted proxy.

    Replaces Django's ``SECURE_PROXY_SSL_HEADER``, which believes the header from any client. Runs before
    ``SecurityMiddleware`` so HSTS and secure redirects see the right scheme.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        proto = request.META.get("HTTP_X_FORWARDED_PROTO")
        if proto and is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            # The proxy closest to the client writes the first value (Django's own rule for this header).
            scheme = proto.split(",", 1)[0].strip().lower()
            if scheme in {"http", "https"}:
                request.META["wsgi.url_scheme"] = scheme
        return self.get_response(request)
