"""The API side of "read your own writes": the ``wait`` / ``min_block`` query parameters, ``Prefer: wait``
(RFC 7240), and the per-process bound on waiting requests (the signals themselves: gxbackend.progress).

A request that asks to wait holds a gunicorn thread; at most ``API_WAIT_MAX_WAITERS`` do at once in one
process. Over the bound the request is answered at once, as without a wait, with ``Retry-After: 1`` (and, for
``Prefer``, no ``Preference-Applied``), so a client that loops on ``?wait=`` backs off instead of spinning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from gxbackend import progress

MAX_BLOCK = 2**63 - 1
T = TypeVar("T")
_PREFER_WAIT = re.compile(r"^\s*wait\s*=\s*\"?([0-9]{1,9})\"?\s*$", re.IGNORECASE)


def _wait_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=settings.API_WAIT_MAX_SECONDS,
        help_text=f"Seconds to hold the request until the write is visible (0–{settings.API_WAIT_MAX_SECONDS}; "
                  "default 0: answer at once). Over the server's limit of waiting requests it answers at once, "
                  "with Retry-After.")


class WaitQuerySerializer(serializers.Serializer):
    """``?wait=<seconds>``."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {"wait": _wait_field()}


class FreshnessQuerySerializer(serializers.Serializer):
    """``?min_block=N&wait=S`` on reads of the read models."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "min_block": serializers.IntegerField(
                required=False, min_value=0, max_value=MAX_BLOCK,
                help_text="Answer once the read models have applied this block (a command's visible_at_block). "
                          "Without it the read is answered at once."),
            "wait": _wait_field(),
        }


def query(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    """The validated query parameters (400 with field errors otherwise); other parameters are left alone."""
    names = serializer_class().fields.keys()
    serializer = serializer_class(data={k: v for k, v in request.query_params.items() if k in names})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def prefer_wait(request: Request) -> int | None:
    """The ``wait`` preference of the ``Prefer`` headers (RFC 7240), capped at ``API_WAIT_MAX_SECONDS``; None
    when absent or malformed (a preference the server cannot read is ignored, as the RFC says)."""
    header = request.headers.get("Prefer", "")
    for preference in header.split(","):
        match = _PREFER_WAIT.match(preference.split(";", 1)[0])
        if match:
            return min(int(match.group(1)), settings.API_WAIT_MAX_SECONDS)
    return None


@dataclass
class Wait:
    """How long this request waited at most: ``seconds`` (0 when it asked for none, needed none or was declined
    because the process held ``API_WAIT_MAX_WAITERS`` waiting requests already)."""

    seconds: int
    declined: bool

    def mark(self, response: Response) -> Response:
        """Adds ``Retry-After`` when the wait was declined (the server was at its bound)."""
        if self.declined:
            response["Retry-After"] = "1"
        return response


def wait_until(seconds: int | None, look: Callable[[float], T], done: Callable[[T], bool]) -> tuple[T, Wait]:
    """``look(0)`` at once; when that is not ``done`` and the request asked for ``seconds``, ``look(seconds)``
    again (``look`` waits up to its argument) while holding one of this process's waiting slots, or not at all
    when none is free. Returns the last look and how the wait went (counted in ``api_waits_total``)."""
    result = look(0)
    if not seconds or done(result):
        return result, Wait(0, declined=False)
    with progress.waiter_slot() as held:
        wait = Wait(seconds if held else 0, declined=not held)
        if held:
            result = look(seconds)
    if held:
        progress.WAITS.labels("visible" if done(result) else "timeout").inc()
    return result, wait
