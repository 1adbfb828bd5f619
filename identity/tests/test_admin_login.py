"""The admin's login is guarded like the API's, by the same code: the (email, address) lockout, whose failures the
two logins share, and the per-address login rate."""

import pytest

from identity.tests.conftest import PASSWORD
from identity.tests.test_lockout_and_throttles import rates

pytestmark = pytest.mark.django_db
ADMIN_LOGIN, API_LOGIN = "/admin/login/", "/api/v1/auth/login"
ATTACKER, ELSEWHERE = "203.0.113.66", "198.51.100.23"
LOCKED = "Too many failed logins for this email from your address"


def admin_login(client, email, password=PASSWORD, ip=ATTACKER):
    return client.post(ADMIN_LOGIN, {"username": email, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.fixture
def staff(make_person):
    return make_person(staff=True).user


def test_25_wrong_admin_passwords_lock_that_email_from_that_address_even_for_the_right_one(client, staff, make_person):
    other_staff = make_person(staff=True).user
    answers = [admin_login(client, staff.email, "wrong-password-1") for _ in range(25)]
    assert all(answer.status_code == 200 for answer in answers)
    assert "correct email and password" in answers[0].content.decode()
    assert LOCKED in answers[-1].content.decode()

    refused = admin_login(client, staff.email)
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    page = refused.content.decode()
    assert LOCKED in page and "Expected available in" in page

    assert logged_in(admin_login(client, staff.email, ip=ELSEWHERE)), "the same person from another address"
    client.logout()
    assert logged_in(admin_login(client, other_staff.email)), "another person from the same address"


def test_admin_failures_count_towards_the_api_lockout_and_the_other_way_round(client, api_client, staff, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 4
    for _ in range(2):
        admin_login(client, staff.email, "wrong-password-1")
        api_client.post(API_LOGIN, {"email": staff.email, "password": "wrong-password-1"}, format="json",
                        REMOTE_ADDR=ATTACKER)
    api = api_client.post(API_LOGIN, {"email": staff.email, "password": PASSWORD}, format="json", REMOTE_ADDR=ATTACKER)
    assert api.status_code == 429 and api.json()["error"]["code"] == "login_locked"
    assert LOCKED in admin_login(client, staff.email).content.decode()


def test_the_lockout_is_keyed_on_the_identity_not_the_spelling(client, staff, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    local, domain = staff.email.split("@")
    for spelling in (staff.email.upper(), f'"{local}"@{domain}', f"{local}\u200b@{domain}"):
        admin_login(client, spelling, "wrong-password-1")
    assert LOCKED in admin_login(client, staff.email).content.decode()


def test_admin_and_api_logins_share_one_rate_per_address(client, api_client, staff, settings):
    rates(settings, login="3/min")
    assert api_client.post(API_LOGIN, {"email": staff.email, "password": PASSWORD}, format="json",
                           REMOTE_ADDR=ATTACKER).status_code == 200
    assert logged_in(admin_login(client, staff.email))
    client.logout()
    assert logged_in(admin_login(client, staff.email))
    client.logout()
    refused = admin_login(client, staff.email)
    assert refused.status_code == 200 and "Too many login attempts from your address" in refused.content.decode()
    assert logged_in(admin_login(client, staff.email, ip=ELSEWHERE))


def test_a_non_staff_user_with_the_right_password_is_still_refused_by_the_admin(client, person):
    response = admin_login(client, person.user.email)
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    assert "staff account" in response.content.decode()


def test_while_redis_is_down_the_admin_login_refuses_saying_so_instead_of_crashing(client, staff, unreachable_cache):
    refused = admin_login(client, staff.email)
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert "Sign-in is briefly unavailable" in refused.content.decode()
