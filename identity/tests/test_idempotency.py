"""Idempotency-Key on POST /users and POST /users/:id/kyc (gxbackend.idempotency, docs/DESIGN.md §2)."""

import json
import threading

import pytest
from django.db import connection

from gxbackend.models import IdempotencyRecord
from identity import services
from identity.models import KycSubmission, User
from identity.tests.conftest import bearer, kyc_body, register_body

REGISTER = "/api/v1/users"


@pytest.mark.django_db
def test_same_key_and_body_replays_the_stored_response_without_running_again(api_client):
    body = register_body()
    first = api_client.post(REGISTER, body, format="json", HTTP_IDEMPOTENCY_KEY="reg-0001")
    again = api_client.post(REGISTER, body, format="json", HTTP_IDEMPOTENCY_KEY="reg-0001")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_key_order_and_whitespace_of_the_body_do_not_matter(api_client):
    body = register_body()
    first = api_client.post(REGISTER, json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    again = api_client.post(REGISTER, reordered, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_same_key_with_a_different_body_answers_422(api_client):
    assert api_client.post(REGISTER, register_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-2").status_code == 201
    response = api_client.post(REGISTER, register_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_a_kyc_replay_returns_the_202_instead_of_the_409_a_second_submission_would_get(client_for, person):
    client, body = client_for(person.user), kyc_body()
    url = f"/api/v1/users/{person.pk}/kyc"
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="kyc-1")
    again = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="kyc-1")
    assert (first.status_code, again.status_code) == (202, 202) and again.json() == first.json()
    assert client.post(url, body, format="json").status_code == 409  # without the key it is a new request
    assert KycSubmission.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_scoped_per_user(api_client, make_person):
    alice, bob = make_person(), make_person()
    for who in (alice, bob):
        response = api_client.post(f"/api/v1/users/{who.pk}/kyc", kyc_body(), format="json",
                                   HTTP_IDEMPOTENCY_KEY="same-key", **bearer(who.user))
        assert response.status_code == 202
    assert IdempotencyRecord.objects.filter(key="same-key").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 129, "naïve-key", "with space"])
def test_a_malformed_key_answers_400(api_client, key):
    response = api_client.post(REGISTER, register_body(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert not User.objects.exists()


@pytest.mark.django_db
def test_a_refused_request_is_not_stored_so_the_key_can_be_used_once_fixed(api_client):
    bad = api_client.post(REGISTER, register_body(nationality="XX"), format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert bad.status_code == 400 and not IdempotencyRecord.objects.exists()
    good = api_client.post(REGISTER, register_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert good.status_code == 201


@pytest.mark.django_db
def test_the_record_is_written_in_the_same_transaction_as_the_domain_rows(api_client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(IdempotencyRecord.objects, "create", broken)
    response = api_client.post(REGISTER, register_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-4")
    assert response.status_code == 500
    assert not User.objects.exists()  # the registration rolled back with the record


def test_a_concurrent_duplicate_while_the_first_is_in_flight_answers_409(transactional_db, monkeypatch):
    from rest_framework.test import APIClient

    entered, release = threading.Event(), threading.Event()
    original = services.user_register

    def slow_register(**kwargs):
        entered.set()
        assert release.wait(30)
        return original(**kwargs)

    monkeypatch.setattr(services, "user_register", slow_register)
    body, results = register_body(), {}

    def first_request():
        try:
            results["first"] = APIClient().post(REGISTER, body, format="json", HTTP_IDEMPOTENCY_KEY="k-5")
        finally:
            connection.close()

    worker = threading.Thread(target=first_request)
    worker.start()
    try:
        assert entered.wait(30)
        duplicate = APIClient().post(REGISTER, body, format="json", HTTP_IDEMPOTENCY_KEY="k-5")
    finally:
        release.set()
        worker.join(30)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "idempotency_request_in_flight"
    assert results["first"].status_code == 201
    replay = APIClient().post(REGISTER, body, format="json", HTTP_IDEMPOTENCY_KEY="k-5")
    assert replay.status_code == 201 and replay.json() == results["first"].json()
    assert User.objects.count() == 1
