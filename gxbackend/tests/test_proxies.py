"""Proxies are trusted by network: forwarding headers from any other peer change nothing."""

from ipaddress import ip_network

import pytest

from gxbackend.proxies import client_ip

pytestmark = pytest.mark.django_db
HSTS = "Strict-Transport-Security"


@pytest.fixture
def ingress(settings):
    settings.TRUSTED_PROXY_CIDRS = (ip_network("10.244.0.0/16"), ip_network("fd00:10:244::/48"))
    settings.SECURE_HSTS_SECONDS = 3600


def test_a_client_claiming_https_through_its_own_header_gets_no_https_treatment(client, ingress):
    response = client.get("/api/v1/users/me", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="203.0.113.7")
    assert HSTS not in response  # HSTS is sent on HTTPS only: the request was not taken for one


def test_the_scheme_a_trusted_proxy_reports_is_believed(client, ingress):
    response = client.get("/api/v1/users/me", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="10.244.3.4")
    assert response[HSTS] == "max-age=3600"
    assert HSTS not in client.get("/api/v1/users/me", HTTP_X_FORWARDED_PROTO="http", REMOTE_ADDR="10.244.3.4")


def test_with_no_trusted_network_nobody_sets_the_scheme(client, settings):
    settings.TRUSTED_PROXY_CIDRS = ()
    settings.SECURE_HSTS_SECONDS = 3600
    assert HSTS not in client.get("/api/v1/users/me", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="127.0.0.1")


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("203.0.113.7", "192.0.2.1", "203.0.113.7"),  # not a proxy: its header is ignored
    ("10.244.1.1", "192.0.2.1", "192.0.2.1"),
    ("10.244.1.1", "6.6.6.6, 192.0.2.1", "192.0.2.1"),  # the client's own entries on the left are never read
    ("10.244.1.1", "192.0.2.1, 10.244.9.9", "192.0.2.1"),  # two trusted hops skipped
    ("fd00:10:244::5", "2001:db8::1", "2001:db8::1"),
    ("::ffff:10.244.1.1", "192.0.2.1", "192.0.2.1"),  # IPv4-mapped peer on a dual-stack socket
    ("10.244.1.1", "", "10.244.1.1"),  # a proxy that added nothing: the proxy itself
    ("10.244.1.1", "garbage", "10.244.1.1"),
])
def test_client_ip(rf, ingress, peer, forwarded, expected):
    request = rf.get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


@pytest.mark.parametrize(("trusted", "believed"), [("", False), ("127.0.0.0/8", True)])
def test_under_gunicorn_only_the_apps_trusted_networks_decide_the_scheme(subprocess_env, trusted, believed):
    """gunicorn itself trusts no X-Forwarded-Proto (its default would trust loopback): the app decides."""
    import urllib.error
    import urllib.request

    from gxbackend.testing import running_gunicorn

    env = dict(subprocess_env, TRUSTED_PROXY_CIDRS=trusted, SECURE_HSTS_SECONDS="3600")
    with running_gunicorn(env, workers=1) as base:
        request = urllib.request.Request(f"{base}/api/v1/users/me", headers={"X-Forwarded-Proto": "https"})
        with pytest.raises(urllib.error.HTTPError) as answer:  # 401: no token, but the headers tell
            urllib.request.urlopen(request, timeout=5)
        assert answer.value.code == 401
        assert (answer.value.headers.get(HSTS) == "max-age=3600") is believed
