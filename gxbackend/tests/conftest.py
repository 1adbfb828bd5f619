"""gxbackend's tests use identity's builders (people, tokens) for the cross-cutting API checks."""

from identity.tests.conftest import client_for, make_person, person  # noqa: F401 - fixtures
