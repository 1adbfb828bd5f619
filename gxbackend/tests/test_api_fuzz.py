"""schemathesis against every operation of the served OpenAPI schema, anonymous and logged in.

The operations come from ``/api/schema/`` itself (no hand-written list: a new endpoint is fuzzed the day it is
added). Each runs through the real WSGI application on the test database, with positive and negative data,
and every response must be a non-5xx that matches the schema (status code, content type, headers, body) and
negative data must be refused. Bounded and reproducible: a fixed number of examples per operation and
Hypothesis's derandomized mode (same examples every run), no example database.
"""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from gxbackend.wsgi import application
from identity.tests.conftest import register_body
from identity.tokens import tokens_for

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# Every built-in check but one: schema-valid data may still break a business rule JSON Schema cannot say (a date
# of birth in the past, a strong password, an existing recipient), so a 400 for it is no schema violation.
NOT_CHECKED = [positive_data_acceptance]
CHECKS = dict(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(autouse=True)
def _one_transaction_per_test(db):
    """Requests run in the test's transaction: keep Django from closing the connection between them.

    (Django's own test client does the same; schemathesis calls the bare WSGI application.)
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _rates_that_let_the_fuzzing_through(settings):
    """Throttles would answer most of the examples with 429 (documented, but shallow): raise the rates here;
    identity/tests/test_lockout_and_throttles.py tests them."""
    rates = {scope: "100000/min" for scope in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    settings.LOGIN_LOCKOUT_THRESHOLD = 100000


@pytest.fixture(autouse=True)
def _no_request_waits(settings):
    """?wait= / Prefer: wait would hold an example for up to API_WAIT_MAX_SECONDS (nothing commits here): with no
    waiter slot every request answers at once, as the API does when its slots are taken (gxbackend/progress.py),
    which keeps the run bounded however many waiting endpoints there are. Waiting is tested on its own."""
    settings.API_WAIT_MAX_WAITERS = 0


@pytest.fixture
def active_user(db):
    """An ACTIVE person with a funded wallet, as the projector leaves them, so authenticated calls go deep."""
    from datetime import date

    from identity.services import user_register
    from projector.services import apply_block
    from projector.tests.conftest import block, user_created

    body = register_body()
    body["date_of_birth"] = date.fromisoformat(body["date_of_birth"])
    profile = user_register(**body)
    apply_block(block(1, user_created(profile.pk.hex)))
    return profile.user


@schema.parametrize()
@hypothesis_settings(**CHECKS)
def test_every_operation_anonymously(case):
    case.call_and_validate(excluded_checks=NOT_CHECKED)


@schema.parametrize()
@hypothesis_settings(**CHECKS)
def test_every_operation_logged_in(case, active_user):
    as_caller(case, active_user)
    case.call_and_validate(excluded_checks=NOT_CHECKED)


def as_caller(case, user) -> None:
    """Makes ``case`` the user's own request: their token and, for a valid ``user_id`` in the path, their id
    (so the fuzzing reaches past the 404 of a random id). A case that tests the headers themselves keeps them
    as generated: a missing or malformed Authorization must get its 401.
    """
    for name, value in list((case.path_parameters or {}).items()):
        if name == "user_id" and _is_uuid(value):
            case.path_parameters[name] = str(user.pk)
    if case.meta is None or not case.meta.is_negative_at(ParameterLocation.HEADER):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {tokens_for(user)['access']}"}


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/users/{user_id}/wallet"])
def test_the_logged_in_fuzzing_reaches_the_views_as_the_user(active_user, path):
    case = schema[path]["GET"].Case(path_parameters={"user_id": str(uuid.uuid4())} if "{" in path else None)
    assert case.call().status_code == 401
    as_caller(case, active_user)
    response = case.call()
    assert response.status_code == 200
    assert active_user.pk.hex in response.text.replace("-", "")
