"""Test-only views that raise each kind of error the API can return."""

from django.db import OperationalError
from django.http import HttpResponse
from django.urls import include, path
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from gxbackend.exceptions import Conflict
from gxbackend.idempotency import idempotent
from identity.models import User


class _Input(serializers.Serializer):
    email = serializers.EmailField()
    age = serializers.IntegerField(min_value=0)


class ValidateView(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        _Input(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


class PrivateView(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"ok": True})


class StaffView(APIView):
    permission_classes = [IsAdminUser]

    def get(self, request):
        return Response({"ok": True})


class ConflictView(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        raise Conflict("A KYC submission is already pending.", code="kyc_pending")


class OneRequestThrottle(AnonRateThrottle):
    rate = "1/min"
    scope = "test-one"


class ThrottledView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [OneRequestThrottle]

    def get(self, request):
        return Response({"ok": True})


class WritesThenAnswers503View(APIView):
    """Writes a row, then answers 503 as a view does when a dependency it needs is down."""

    permission_classes = [AllowAny]

    @idempotent
    def post(self, request):
        User.objects.create_user(request.data["email"], None)
        return Response({"error": {"code": "unavailable", "message": "try again"}}, status=503)


class CrashView(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        secret_in_scope = request.data.get("password")  # noqa: F841 - must not reach the logs
        raise RuntimeError("boom")


class DatabaseDownView(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        raise OperationalError('connection to server at "127.0.0.1" failed: the database system is shutting down')


def database_down_outside_drf(request) -> HttpResponse:
    raise OperationalError("connection refused")


urlpatterns = [
    path("t/database-down", DatabaseDownView.as_view()),
    path("t/database-down-plain", database_down_outside_drf),
    path("t/validate", ValidateView.as_view()),
    path("t/private", PrivateView.as_view()),
    path("t/staff", StaffView.as_view()),
    path("t/conflict", ConflictView.as_view()),
    path("t/throttled", ThrottledView.as_view()),
    path("t/crash", CrashView.as_view()),
    path("t/writes-then-503", WritesThenAnswers503View.as_view()),
    path("", include("gxbackend.urls")),
]
handler404 = "gxbackend.exceptions.handler404"
handler500 = "gxbackend.exceptions.handler500"
