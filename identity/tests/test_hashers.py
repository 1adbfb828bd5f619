"""Password hashing: the stored parameters, the upgrade of older hashes at login, the per-process hashing slots."""

import threading
import time

import argon2
import pytest
from django.contrib.auth.hashers import check_password, make_password
from django.test import override_settings

from identity.models import User
from identity.tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN = "/api/v1/auth/login"


def parameters(encoded: str) -> tuple[str, int, int, int]:
    algorithm, rest = encoded.split("$", 1)
    params = argon2.extract_parameters("$" + rest)
    return algorithm, params.memory_cost, params.time_cost, params.parallelism


def test_passwords_are_stored_as_argon2id_with_64_mib_3_passes_1_lane(person):
    stored = User.objects.get(pk=person.pk).password
    assert stored.startswith("argon2$argon2id$")
    assert parameters(stored) == ("argon2", 64 * 1024, 3, 1)


def test_a_hash_with_the_earlier_parameters_still_logs_in_and_is_upgraded(api_client, person):
    older = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1).hash(PASSWORD)
    User.objects.filter(pk=person.pk).update(password="argon2" + older)

    response = api_client.post(LOGIN, {"email": person.user.email, "password": PASSWORD}, format="json")

    assert response.status_code == 200, response.content
    stored = User.objects.get(pk=person.pk).password
    assert parameters(stored) == ("argon2", 64 * 1024, 3, 1)
    assert check_password(PASSWORD, stored)


def most_hashes_at_once(monkeypatch, threads: int) -> int:
    """Verifies one password from ``threads`` threads at once; returns how many argon2 runs overlapped at most."""
    encoded = make_password(PASSWORD)
    original = argon2.PasswordHasher.verify
    lock, running, most = threading.Lock(), [0], [0]

    def observed(self, hash, password):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)  # long enough for every thread to arrive while this one is still hashing
            return original(self, hash, password)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(argon2.PasswordHasher, "verify", observed)
    results = []
    pool = [threading.Thread(target=lambda: results.append(check_password(PASSWORD, encoded)))
            for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert results == [True] * threads
    return most[0]


def test_one_process_runs_at_most_password_hash_concurrency_hashes_at_once(monkeypatch):
    with override_settings(PASSWORD_HASH_CONCURRENCY=1):
        assert most_hashes_at_once(monkeypatch, threads=4) == 1
    with override_settings(PASSWORD_HASH_CONCURRENCY=2):
        assert most_hashes_at_once(monkeypatch, threads=4) == 2
