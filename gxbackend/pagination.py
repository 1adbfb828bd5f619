"""Cursor pagination that answers a tampered cursor or a bad page size with 400, never 404 or 500."""

from __future__ import annotations

import re

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination

_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class StrictCursorPagination(CursorPagination):
    """DRF's cursor pagination, ordered by an integer column, refusing any cursor it did not make.

    DRF decodes the cursor but hands its position (``p=``) to the query as it comes: ``p=abc`` or ``p=1e999``
    failed in the database (500), an undecodable cursor was a 404. A cursor is opaque to clients, so anything
    but a position our own pages can have is a 400 naming ``cursor``. ``page_size`` is 1 to ``max_page_size``
    or a 400 (DRF silently used the default for anything else); the OpenAPI parameters say both.
    """

    # Our positions are integer ids (BigAutoField): at most 18 digits always fits a signed 64-bit column.
    position_pattern = re.compile(r"^[0-9]{1,18}$")
    invalid_cursor_message = "Invalid cursor."

    def decode_cursor(self, request) -> Cursor | None:
        encoded = request.query_params.get(self.cursor_query_param)
        try:
            # b64decode skips characters outside the alphabet: "%%%" would pass as an empty cursor.
            if encoded is not None and not _BASE64.match(encoded):
                raise NotFound
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
            valid = False
        else:
            valid = cursor is None or cursor.position is None or bool(self.position_pattern.match(cursor.position))
        if not valid:
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]})
        return cursor

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param) if self.page_size_query_param else None
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [f"Must be an integer from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.cursor_query_param:
                parameter["schema"]["pattern"] = _BASE64.pattern
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters
