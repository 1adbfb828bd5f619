"""OpenAPI pieces shared by every app's views: the one error shape, the Idempotency-Key header, and the
schema class that documents what every operation can answer besides its own codes.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class ErrorSerializer(serializers.Serializer):
    """``{"error": {"code", "message", "fields"}, "request_id"}`` (gxbackend.exceptions)."""

    error = ErrorBodySerializer()
    request_id = serializers.CharField(allow_null=True)


ERROR_RESPONSE = OpenApiResponse(ErrorSerializer, description="The one JSON error shape of the API.")


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return dict.fromkeys(codes, ERROR_RESPONSE)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Same key + same body → the stored response; different body → 422; while the first request "
                "is running → 409.",
)


class GxAutoSchema(AutoSchema):
    """drf-spectacular's schema, precise about what the code really does (schemathesis checks it).

    - Input serializers that refuse unknown fields (``refuses_unknown_fields``) say so:
      ``additionalProperties: false``.
    - Every operation lists the error answers that come from layers below its view, in the one error shape:
      400 (malformed request, bad ``Content-Length``), 405/406 (method, ``Accept``), 413 (body over
      ``MAX_REQUEST_BODY_BYTES``); 415 where it takes a body; 401 where it needs a token; 404 where its path
      names a resource; 429 where it is throttled. Codes a view documents itself are kept as written.
    """

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and getattr(force_instance(serializer), "refuses_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema

    def error_status_codes(self) -> list[int]:
        codes = [400, 405, 406, 413]
        if self.method in {"POST", "PUT", "PATCH"}:
            codes.append(415)
        if self.get_auth():
            codes.append(401)
        if "{" in self.path:
            codes.append(404)
        if getattr(self.view, "throttle_classes", None):
            codes.append(429)
        return sorted(codes)

    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        if direction == "response":
            for code in self.error_status_codes():
                responses.setdefault(str(code), self._get_response_for_code(ERROR_RESPONSE, str(code),
                                                                             direction=direction))
        return dict(sorted(responses.items()))
