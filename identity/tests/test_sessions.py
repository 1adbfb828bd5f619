"""Sessions end when they should: a password change or a deactivation revokes every token issued before it (access
and refresh), and a refresh reads the role from the database."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import RefreshToken

from identity.models import User
from identity.services import auth_refresh
from identity.tests.conftest import PASSWORD
from identity.tests.test_apis_auth import claims, login

pytestmark = pytest.mark.django_db
REFRESH, ME = "/api/v1/auth/refresh", "/api/v1/users/me"
NEW_PASSWORD = "another-horse-battery-7"


def me(api_client, access):
    return api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {access}")


def refresh(api_client, token, **extra):
    return api_client.post(REFRESH, {"refresh": token}, format="json", **extra)


def assert_session_ended(api_client, tokens):
    answer = me(api_client, tokens["access"])
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "session_revoked"
    refused = refresh(api_client, tokens["refresh"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_not_valid"


def test_a_password_change_ends_every_earlier_session_and_a_new_login_works(api_client, person):
    sessions = [login(api_client, person.user.email).json() for _ in range(2)]
    user = User.objects.get(pk=person.pk)
    user.set_password(NEW_PASSWORD)
    user.save()
    for tokens in sessions:
        assert_session_ended(api_client, tokens)
    fresh = login(api_client, person.user.email, NEW_PASSWORD).json()
    assert me(api_client, fresh["access"]).status_code == 200
    assert refresh(api_client, fresh["refresh"]).status_code == 200


def test_a_password_change_saved_with_update_fields_still_ends_the_sessions(api_client, person):
    tokens = login(api_client, person.user.email).json()
    user = User.objects.get(pk=person.pk)
    user.set_password(NEW_PASSWORD)
    user.save(update_fields=["password"])
    assert_session_ended(api_client, tokens)


def test_a_hash_upgrade_at_login_is_not_a_password_change(api_client, person):
    import argon2

    tokens = login(api_client, person.user.email).json()
    older = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1).hash(PASSWORD)
    User.objects.filter(pk=person.pk).update(password="argon2" + older)
    assert login(api_client, person.user.email).status_code == 200  # rehashed and saved
    assert User.objects.get(pk=person.pk).password != "argon2" + older
    assert me(api_client, tokens["access"]).status_code == 200
    assert refresh(api_client, tokens["refresh"]).status_code == 200


def test_deactivating_in_the_admin_ends_the_sessions_and_reactivation_does_not_revive_them(api_client, client,
                                                                                           person, make_person):
    tokens = login(api_client, person.user.email).json()
    superuser = make_person(staff=True).user
    User.objects.filter(pk=superuser.pk).update(is_superuser=True)
    client.force_login(User.objects.get(pk=superuser.pk))
    change = f"/admin/identity/user/{person.pk}/change/"
    assert client.post(change, {"is_staff": "", "is_superuser": ""}).status_code == 302  # is_active unticked
    assert User.objects.get(pk=person.pk).is_active is False
    refused = refresh(api_client, tokens["refresh"])
    assert refused.status_code == 401
    assert me(api_client, tokens["access"]).status_code == 401

    assert client.post(change, {"is_active": "on"}).status_code == 302
    assert_session_ended(api_client, tokens)
    assert login(api_client, person.user.email).status_code == 200


def test_every_api_view_checks_the_session_not_only_identity_s(api_client, person):
    tokens = login(api_client, person.user.email).json()
    wallet = f"/api/v1/users/{person.pk}/wallet"
    before = api_client.get(wallet, HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert before.status_code == 404 and before.json()["error"]["code"] == "wallet_not_found"  # authenticated
    user = User.objects.get(pk=person.pk)
    user.set_password(NEW_PASSWORD)
    user.save()
    revoked = api_client.get(wallet, HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "session_revoked"


def test_a_token_from_before_session_versions_is_valid_until_the_first_change(api_client, person):
    legacy = RefreshToken.for_user(person.user)  # user_id only: no role, no session_version claim
    assert me(api_client, str(legacy.access_token)).status_code == 200
    user = User.objects.get(pk=person.pk)
    user.set_password(NEW_PASSWORD)
    user.save()
    assert_session_ended(api_client, {"access": str(legacy.access_token), "refresh": str(legacy)})


def test_a_refresh_reads_the_role_from_the_database(api_client, make_person):
    staff = make_person(staff=True)
    tokens = login(api_client, staff.user.email).json()
    assert claims(tokens["access"])["role"] == "admin"
    User.objects.filter(pk=staff.pk).update(is_staff=False)
    refreshed = refresh(api_client, tokens["refresh"]).json()
    assert claims(refreshed["access"])["role"] == claims(refreshed["refresh"])["role"] == "user"
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    assert claims(refresh(api_client, refreshed["refresh"]).json()["access"])["role"] == "admin"


def test_a_deactivated_user_cannot_refresh(api_client, person):
    tokens = login(api_client, person.user.email).json()
    User.objects.filter(pk=person.pk).update(is_active=False)  # even behind save()'s back
    refused = refresh(api_client, tokens["refresh"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_not_valid"


def test_a_refresh_token_of_a_deleted_user_gets_401_not_500(api_client, person):
    tokens = login(api_client, person.user.email).json()
    User.objects.filter(pk=person.pk).delete()
    assert refresh(api_client, tokens["refresh"]).status_code == 401


def test_a_signed_refresh_token_with_an_odd_user_id_gets_401_not_500(api_client):
    for odd in ("not-a-uuid", 12345, None, ["x"]):
        token = RefreshToken()  # signed with our key, but never issued to a user
        token["user_id"] = odd
        assert refresh(api_client, str(token)).status_code == 401


def test_logout_revokes_a_refresh_token_that_has_no_outstanding_row(api_client, person):
    token = RefreshToken()  # as issued before the blacklist app recorded outstanding tokens
    token["user_id"] = str(person.pk)
    assert api_client.post("/api/v1/auth/logout", {"refresh": str(token)}, format="json").status_code == 204
    refused = refresh(api_client, str(token))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_not_valid"


@pytest.mark.django_db(transaction=True)
def test_of_two_concurrent_refreshes_with_one_token_exactly_one_wins(person):
    token = str(RefreshToken.for_user(person.user))

    def attempt(_):
        try:
            return auth_refresh(refresh=token)
        except InvalidToken as exc:  # the loser's refusal is the point
            return exc
        finally:
            connection.close()

    for _ in range(3):
        token = str(RefreshToken.for_user(person.user))
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(attempt, range(2)))
        winners = [r for r in results if isinstance(r, dict)]
        assert len(winners) == 1, results


def test_the_session_check_costs_no_query_beyond_the_one_that_loads_the_user(api_client, person,
                                                                             django_assert_num_queries):
    access = login(api_client, person.user.email).json()["access"]
    with django_assert_num_queries(1):
        assert me(api_client, access).status_code == 200
