"""A tampered pagination cursor on /transactions is a 400 naming ``cursor``, never a 404 or a 500."""

import base64
import logging

import pytest

pytestmark = pytest.mark.django_db


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def owner(make_user, api_client):
    user = make_user()
    api_client.force_authenticate(user)
    return user, api_client


@pytest.mark.parametrize("cursor", [
    b64("p=abc"), b64("p=1e999"), b64("p=99999999999999999999999"), b64("p=-5"), b64("p=5.0"), b64("o=-1&p=5"),
    b64("r=x"), "garbage!!", "%%%", "ÿ",
])
def test_a_tampered_cursor_is_a_400_naming_the_cursor(owner, cursor, caplog):
    user, client = owner
    response = client.get(f"/api/v1/users/{user.pk}/transactions", {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"] == {"cursor": ["Invalid cursor."]}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_the_cursors_the_api_makes_still_page(owner):
    user, client = owner
    for cursor in (b64("p=5"), b64("o=1&r=1&p=5"), ""):
        response = client.get(f"/api/v1/users/{user.pk}/transactions", {"cursor": cursor})
        assert response.status_code == 200, cursor
        assert response.json()["results"] == []


@pytest.mark.parametrize("page_size", ["0", "201", "-1", "null", "1.5", "", "٣"])
def test_a_page_size_outside_1_to_200_is_a_400(owner, page_size):
    user, client = owner
    response = client.get(f"/api/v1/users/{user.pk}/transactions", {"page_size": page_size})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["page_size"]


def test_a_page_size_within_bounds_is_used(owner):
    user, client = owner
    assert client.get(f"/api/v1/users/{user.pk}/transactions", {"page_size": "200"}).status_code == 200
