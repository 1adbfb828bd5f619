"""The client's IP address, as the login lockout and the throttles see it (trusted proxies: gxbackend.proxies)."""

from gxbackend.proxies import client_ip

__all__ = ["client_ip"]
