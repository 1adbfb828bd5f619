"""Brute force and abuse: the (email, IP) login lockout with a growing delay, per-route throttles (register,
login, refresh, logout, KYC), client IP."""

from ipaddress import ip_network

import pytest

from identity import lockout
from identity.tests.conftest import PASSWORD, kyc_body, register_body

pytestmark = pytest.mark.django_db
LOGIN, REFRESH, LOGOUT = "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"


@pytest.fixture(autouse=True)
def _lockout_settings(settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    settings.LOGIN_LOCKOUT_BASE_SECONDS = 30
    settings.LOGIN_LOCKOUT_MAX_SECONDS = 100


@pytest.fixture
def clock(monkeypatch):
    """The lockout's clock, advanced by tests instead of sleeping."""

    class Clock:
        now = 1_900_000_000.0

        def advance(self, seconds: float) -> None:
            self.now += seconds

    fake = Clock()
    monkeypatch.setattr(lockout, "_now", lambda: fake.now)
    return fake


def login(api_client, email, password=PASSWORD, ip="203.0.113.7", forwarded=None):
    extra = {"REMOTE_ADDR": ip}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return api_client.post(LOGIN, {"email": email, "password": password}, format="json", **extra)


def fail(api_client, email, times, **kwargs):
    for _ in range(times):
        assert login(api_client, email, "wrong-password-1", **kwargs).status_code == 401


def test_repeated_failures_lock_the_email_from_that_ip_even_for_the_right_password(api_client, person, clock):
    fail(api_client, person.user.email, 3)
    response = login(api_client, person.user.email)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "login_locked"
    assert response["Retry-After"] == "30"


def test_the_lock_ends_after_its_delay_and_a_success_clears_the_count(api_client, person, clock):
    fail(api_client, person.user.email, 3)
    clock.advance(31)
    assert login(api_client, person.user.email).status_code == 200
    fail(api_client, person.user.email, 2)  # the count starts again from zero
    assert login(api_client, person.user.email).status_code == 200


def test_each_failure_after_a_lock_doubles_the_delay_up_to_the_maximum(api_client, person, clock):
    fail(api_client, person.user.email, 3)
    delays = []
    for _ in range(3):
        delays.append(int(login(api_client, person.user.email)["Retry-After"]))
        clock.advance(delays[-1] + 1)
        fail(api_client, person.user.email, 1)
    delays.append(int(login(api_client, person.user.email)["Retry-After"]))
    assert delays == [30, 60, 100, 100]


def test_the_lock_is_per_ip_and_per_email(api_client, make_person, clock):
    victim, other = make_person(), make_person()
    fail(api_client, victim.user.email, 3, ip="198.51.100.1")
    assert login(api_client, victim.user.email, ip="198.51.100.1").status_code == 429
    assert login(api_client, victim.user.email, ip="198.51.100.2").status_code == 200
    assert login(api_client, other.user.email, ip="198.51.100.1").status_code == 200


def test_unknown_emails_are_locked_exactly_like_known_ones(api_client, clock):
    fail(api_client, "nobody@example.com", 3)
    assert login(api_client, "nobody@example.com").status_code == 429


def test_x_forwarded_for_is_ignored_without_trusted_proxies(api_client, person, settings, clock):
    settings.TRUSTED_PROXY_CIDRS = ()
    for n in range(3):  # a client rotating fake X-Forwarded-For values is still one address
        login(api_client, person.user.email, "wrong-password-1", forwarded=f"192.0.2.{n}")
    assert login(api_client, person.user.email, forwarded="192.0.2.99").status_code == 429


def test_x_forwarded_for_from_a_peer_outside_the_trusted_networks_changes_nothing(api_client, person, settings,
                                                                                   clock):
    settings.TRUSTED_PROXY_CIDRS = (ip_network("10.0.0.0/8"),)
    for n in range(3):  # the attacker is not a proxy: its own X-Forwarded-For (even naming a proxy) is ignored
        login(api_client, person.user.email, "wrong-password-1", ip="203.0.113.7",
              forwarded=f"192.0.2.{n}, 10.0.0.{n}")
    assert login(api_client, person.user.email, ip="203.0.113.7", forwarded="192.0.2.99").status_code == 429


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client(api_client, person, settings, clock):
    settings.TRUSTED_PROXY_CIDRS = (ip_network("10.0.0.0/8"),)
    proxy = "10.0.0.5"
    fail(api_client, person.user.email, 3, ip=proxy, forwarded="192.0.2.1")
    # A spoofed entry on the left does not help: the proxy's entry (rightmost) is what counts.
    assert login(api_client, person.user.email, ip=proxy, forwarded="192.0.2.200, 192.0.2.1").status_code == 429
    assert login(api_client, person.user.email, ip=proxy, forwarded="192.0.2.2").status_code == 200


def test_trusted_hops_are_skipped_from_the_right_up_to_the_first_untrusted_address(api_client, person, settings,
                                                                                   clock):
    settings.TRUSTED_PROXY_CIDRS = (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))
    fail(api_client, person.user.email, 3, ip="10.0.0.1", forwarded="6.6.6.6, 192.0.2.1, 10.0.0.9, 2001:db8::7")
    assert login(api_client, person.user.email, ip="10.0.0.2", forwarded="192.0.2.1, 10.0.0.8").status_code == 429
    assert login(api_client, person.user.email, ip="10.0.0.2", forwarded="192.0.2.2, 10.0.0.8").status_code == 200


def test_a_malformed_forwarded_entry_falls_back_to_the_nearest_trusted_hop(api_client, person, settings, clock):
    settings.TRUSTED_PROXY_CIDRS = (ip_network("10.0.0.0/8"),)
    for junk in ("not-an-ip", "192.0.2.1:5555", ""):
        login(api_client, person.user.email, "wrong-password-1", ip="10.0.0.5", forwarded=f"{junk}, 10.0.0.9")
    # All three were keyed on 10.0.0.9 (the last address a trusted proxy vouched for), none on the junk.
    assert login(api_client, person.user.email, ip="10.0.0.5", forwarded="10.0.0.9").status_code == 429


def test_per_ip_throttles_ignore_a_faked_x_forwarded_for(api_client, person, settings):
    rates(settings, login="2/min")
    settings.TRUSTED_PROXY_CIDRS = (ip_network("10.0.0.0/8"),)
    codes = [login(api_client, person.user.email, ip="203.0.113.9", forwarded=f"192.0.2.{n}").status_code
             for n in range(3)]
    assert codes == [200, 200, 429]


def rates(settings, **overrides):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
                                                          **overrides}}


def test_registrations_are_throttled_per_client_ip(api_client, settings):
    rates(settings, register="2/hour")
    for _ in range(2):
        assert api_client.post("/api/v1/users", register_body(), format="json",
                               REMOTE_ADDR="198.51.100.1").status_code == 201
    refused = api_client.post("/api/v1/users", register_body(), format="json", REMOTE_ADDR="198.51.100.1")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled" and int(refused["Retry-After"]) > 0
    assert api_client.post("/api/v1/users", register_body(), format="json",
                           REMOTE_ADDR="198.51.100.2").status_code == 201


def test_logins_are_throttled_per_client_ip(api_client, make_person, settings):
    rates(settings, login="2/min")
    people = [make_person() for _ in range(3)]
    assert [login(api_client, p.user.email).status_code for p in people] == [200, 200, 429]
    assert login(api_client, people[2].user.email, ip="198.51.100.9").status_code == 200


def test_kyc_submissions_are_throttled_per_user(client_for, person, settings):
    rates(settings, kyc="1/hour")
    client = client_for(person.user)
    assert client.post(f"/api/v1/users/{person.pk}/kyc", kyc_body(), format="json").status_code == 202
    refused = client.post(f"/api/v1/users/{person.pk}/kyc", kyc_body(), format="json")
    assert refused.status_code == 429  # throttled before the 409 of the pending submission
    assert refused.json()["error"]["code"] == "throttled"


def token_refresh(api_client, token, **extra):
    return api_client.post(REFRESH, {"refresh": token}, format="json", **extra)


def test_refreshes_are_throttled_per_client_address(api_client, person, settings):
    rates(settings, refresh="2/min")
    tokens = login(api_client, person.user.email).json()
    first = token_refresh(api_client, tokens["refresh"], REMOTE_ADDR="198.51.100.1").json()
    second = token_refresh(api_client, first["refresh"], REMOTE_ADDR="198.51.100.1").json()
    refused = token_refresh(api_client, second["refresh"], REMOTE_ADDR="198.51.100.1")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0
    assert token_refresh(api_client, second["refresh"], REMOTE_ADDR="198.51.100.2").status_code == 200


def test_logouts_are_throttled_per_client_address(api_client, person, settings):
    rates(settings, logout="1/min")
    first, second = (login(api_client, person.user.email).json() for _ in range(2))
    assert api_client.post(LOGOUT, {"refresh": first["refresh"]}, format="json",
                           REMOTE_ADDR="198.51.100.1").status_code == 204
    refused = api_client.post(LOGOUT, {"refresh": second["refresh"]}, format="json", REMOTE_ADDR="198.51.100.1")
    assert refused.status_code == 429
    assert api_client.post(LOGOUT, {"refresh": second["refresh"]}, format="json",
                           REMOTE_ADDR="198.51.100.2").status_code == 204


# --- Redis down: throttles fail open, the login lockout fails closed ------------------------------------
def test_while_redis_is_down_throttles_let_requests_through(api_client, settings, unreachable_cache):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
                                                          "register": "1/hour"}}
    for _ in range(2):
        assert api_client.post("/api/v1/users", register_body(), format="json").status_code == 201


def test_while_redis_is_down_logins_answer_503_and_verify_no_password(api_client, person, unreachable_cache,
                                                                      monkeypatch):
    monkeypatch.setattr(type(person.user), "check_password", lambda *a: pytest.fail("a password was verified"))
    response = login(api_client, person.user.email, "any-guess-at-all-1")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "login_unavailable"
    assert response["Retry-After"] == "5"


def test_while_redis_is_down_signed_in_people_keep_their_session(api_client, person, unreachable_cache):
    from identity.tokens import tokens_for

    tokens = tokens_for(person.user)
    me = api_client.get("/api/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert me.status_code == 200
    refreshed = api_client.post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200 and refreshed.json()["access"]


def test_a_failure_redis_cannot_record_is_still_a_401(person, settings, unreachable_cache):
    assert lockout.record_failure(email=person.user.email, ip="203.0.113.7") == 0
    lockout.record_success(email=person.user.email, ip="203.0.113.7")  # best effort: no exception
