"""OpenAPI pieces shared by every app's views: the one error shape and the Idempotency-Key header."""

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
