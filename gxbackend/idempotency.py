"""``Idempotency-Key`` for mutating endpoints (docs/DESIGN.md §2), stored in PostgreSQL as :class:`IdempotencyRecord`.

Decorate a DRF view method with :func:`idempotent`. With the header present:

- the key (1–128 printable ASCII characters) is scoped to the method, the path and the authenticated user
  (anonymous callers share one scope per path, so use random keys such as UUIDs);
- same key + same body as a completed request → that request's stored status and body, with
  ``Idempotent-Replayed: true``; nothing runs again;
- same key + a different body → 422 ``idempotency_key_reused``;
- same key while the first request is still running → 409 ``idempotency_request_in_flight``;
- otherwise the view runs inside one ``transaction.atomic()`` that also writes the record, so the domain rows,
  the outbox row and the record commit (or roll back) together. The key is on ``request.idempotency_key`` for
  the view to pass on (e.g. into the outbox row).

How a concurrent duplicate is recognised: the first request holds a transaction-scoped PostgreSQL advisory
lock on (scope, user, key) until it commits; a duplicate that cannot take the lock at once answers 409 instead
of waiting. Once the first commits, its record is visible before the lock is released, so a later duplicate
replays it. Only responses below 500 that the view returned are stored; an error raised by the view (a
``DomainError``, a validation error) or a 5xx response it returned rolls the transaction back, so no row
commits without its record and the client may retry with the same key. On SQLite (development only) there
are no advisory locks; its single writer serialises the duplicate, which then replays the stored response.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from gxbackend.exceptions import Conflict, Unprocessable, ValidationFailed
from gxbackend.models import IdempotencyRecord

HEADER = "Idempotency-Key"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


def _canonical(data: Any) -> str:
    return json.dumps(data, cls=JSONEncoder, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_fingerprint(request: Request) -> str:
    """SHA-256 of the parsed body in canonical JSON (key order and whitespace do not matter)."""
    return hashlib.sha256(_canonical(request.data).encode()).hexdigest()


def _scope(request: Request) -> str:
    scope = f"{request.method} {request.path}"
    if len(scope) > 128:
        scope = f"{request.method} sha256:{hashlib.sha256(request.path.encode()).hexdigest()}"
    return scope


def _try_lock(scope: str, user_id: Any, key: str) -> bool:
    if connection.vendor != "postgresql":
        return True
    digest = hashlib.sha256(f"{scope}\x00{user_id}\x00{key}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id])
        return bool(cursor.fetchone()[0])


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.response_body, status=record.response_status)
    response["Idempotent-Replayed"] = "true"
    return response


def _rolled_back_on_5xx(response: Response) -> Response:
    """Marks the request's transaction for rollback when the view answered 5xx: a failed request leaves no
    rows behind without their idempotency record, so the client may retry with the same key."""
    if response.status_code >= 500:
        transaction.set_rollback(True)
    return response


def idempotent(view_method: Callable[..., Response]) -> Callable[..., Response]:
    """Decorator for a DRF view method (``post``) making it honour ``Idempotency-Key`` as described above."""

    @functools.wraps(view_method)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        request.idempotency_key = key
        if key is None:
            # No record to keep consistent, and the services run their own transactions (registration hashes
            # the password outside one on purpose).
            return view_method(view, request, *args, **kwargs)
        if not _VALID_KEY.match(key):
            raise ValidationFailed(
                "The Idempotency-Key header must be 1 to 128 printable ASCII characters.",
                code="invalid_idempotency_key", fields={HEADER: ["1 to 128 printable ASCII characters."]},
            )
        scope = _scope(request)
        user = request.user if request.user and request.user.is_authenticated else None
        fingerprint = request_fingerprint(request)

        with transaction.atomic():
            if not _try_lock(scope, user.pk if user else None, key):
                raise Conflict("A request with this Idempotency-Key is still being processed; retry later.",
                               code="idempotency_request_in_flight")
            existing = IdempotencyRecord.objects.filter(scope=scope, key=key, user=user).first()
            if existing is not None:
                if existing.request_hash != fingerprint:
                    raise Unprocessable("This Idempotency-Key was already used with a different request body.",
                                        code="idempotency_key_reused")
                if existing.completed_at is None:
                    raise Conflict("A request with this Idempotency-Key is still being processed; retry later.",
                                   code="idempotency_request_in_flight")
                return _replay(existing)

            response = view_method(view, request, *args, **kwargs)
            if response.status_code >= 500:
                return _rolled_back_on_5xx(response)
            try:
                with transaction.atomic():
                    IdempotencyRecord.objects.create(
                        key=key, user=user, scope=scope, request_hash=fingerprint,
                        response_status=response.status_code,
                        response_body=json.loads(_canonical(response.data)),
                        completed_at=timezone.now(),
                    )
            except IntegrityError as exc:
                # Only reachable without advisory locks: another request stored this key meanwhile.
                raise Conflict("A request with this Idempotency-Key was processed concurrently.",
                               code="idempotency_request_in_flight") from exc
            return response

    return wrapper
