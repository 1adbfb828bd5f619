"""The identity REST API (docs/DESIGN.md §2): each view validates, calls one service or selector, renders."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gxbackend.idempotency import idempotent
from gxbackend.schema import IDEMPOTENCY_KEY, error_responses
from identity import selectors, services
from identity.authentication import ProfileJWTAuthentication
from identity.net import client_ip
from identity.serializers import (
    KycSubmitInputSerializer,
    KycSubmitOutputSerializer,
    LoginInputSerializer,
    LoginOutputSerializer,
    ProfileOutputSerializer,
    ProfileUpdateInputSerializer,
    RefreshInputSerializer,
    RefreshOutputSerializer,
    RegisterInputSerializer,
    render_profile,
)
from identity.throttles import KycThrottle, LoginThrottle, LogoutThrottle, RefreshThrottle, RegisterThrottle


def _validated(serializer_class: type[serializers.Serializer], data: object, **kwargs: object) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class _TokenEndpoint(APIView):
    """Login, refresh and logout take credentials in the body; a stale ``Authorization`` header is ignored."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        # Keeps token errors at 401 (DRF turns a 401 without this header into 403).
        return 'Bearer realm="api"'


class UserRegisterApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [RegisterThrottle]

    @extend_schema(operation_id="users_register", request=RegisterInputSerializer,
                   responses={201: ProfileOutputSerializer, **error_responses(400, 409, 413, 422, 429)},
                   parameters=[IDEMPOTENCY_KEY], auth=[], tags=["users"])
    @idempotent
    def post(self, request: Request) -> Response:
        profile = services.user_register(**_validated(RegisterInputSerializer, request.data))
        return Response(render_profile(profile), status=status.HTTP_201_CREATED)


class LoginApi(_TokenEndpoint):
    throttle_classes = [LoginThrottle]

    @extend_schema(operation_id="auth_login", request=LoginInputSerializer,
                   responses={200: LoginOutputSerializer, **error_responses(400, 401, 429, 503)}, auth=[],
                   tags=["auth"])
    def post(self, request: Request) -> Response:
        data = _validated(LoginInputSerializer, request.data)
        result = services.auth_login(email=data["email"], password=data["password"], client_ip=client_ip(request))
        # LoginOutputSerializer documents the shape; rendering through the shared profile renderer skips
        # building a nested serializer per login.
        user = render_profile(result.profile) if result.profile is not None else None
        return Response({"access": result.access, "refresh": result.refresh, "user": user})


class RefreshApi(_TokenEndpoint):
    throttle_classes = [RefreshThrottle]

    @extend_schema(operation_id="auth_refresh", request=RefreshInputSerializer,
                   responses={200: RefreshOutputSerializer, **error_responses(400, 401, 429)}, auth=[], tags=["auth"])
    def post(self, request: Request) -> Response:
        tokens = services.auth_refresh(refresh=_validated(RefreshInputSerializer, request.data)["refresh"])
        return Response(RefreshOutputSerializer(tokens).data)


class LogoutApi(_TokenEndpoint):
    throttle_classes = [LogoutThrottle]

    @extend_schema(operation_id="auth_logout", request=RefreshInputSerializer,
                   responses={204: None, **error_responses(400, 401, 429)}, auth=[], tags=["auth"])
    def post(self, request: Request) -> Response:
        services.auth_logout(refresh=_validated(RefreshInputSerializer, request.data)["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class _ProfileApi(APIView):
    authentication_classes = [ProfileJWTAuthentication]
    permission_classes = [IsAuthenticated]

    def profile_id(self, request: Request, user_id: uuid.UUID | None) -> uuid.UUID:
        return user_id if user_id is not None else request.user.pk

    def get(self, request: Request, user_id: uuid.UUID | None = None) -> Response:
        profile = selectors.profile_get_visible(viewer=request.user, profile_id=self.profile_id(request, user_id))
        return Response(render_profile(profile))

    def patch(self, request: Request, user_id: uuid.UUID | None = None) -> Response:
        profile = selectors.profile_get_own(actor=request.user, profile_id=self.profile_id(request, user_id))
        changes = _validated(ProfileUpdateInputSerializer, request.data, partial=True)
        profile = services.profile_update(profile=profile, changes=dict(changes))
        return Response(render_profile(profile))


_GET_DOC = {"responses": {200: ProfileOutputSerializer, **error_responses(401, 404)}, "tags": ["users"]}
_PATCH_DOC = {"request": ProfileUpdateInputSerializer,
              "responses": {200: ProfileOutputSerializer, **error_responses(400, 401, 403, 404)}, "tags": ["users"]}


class UserDetailApi(_ProfileApi):
    """A profile by id: your own, or any when staff; another user's id answers 404."""

    @extend_schema(operation_id="users_retrieve", **_GET_DOC)
    def get(self, request: Request, user_id: uuid.UUID | None = None) -> Response:
        return super().get(request, user_id)

    @extend_schema(operation_id="users_partial_update", **_PATCH_DOC)
    def patch(self, request: Request, user_id: uuid.UUID | None = None) -> Response:
        return super().patch(request, user_id)


class UserMeApi(_ProfileApi):
    """The caller's own profile."""

    @extend_schema(operation_id="users_me_retrieve", **_GET_DOC)
    def get(self, request: Request) -> Response:
        return super().get(request, None)

    @extend_schema(operation_id="users_me_partial_update", **_PATCH_DOC)
    def patch(self, request: Request) -> Response:
        return super().patch(request, None)


class KycSubmitApi(APIView):
    authentication_classes = [ProfileJWTAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [KycThrottle]

    @extend_schema(operation_id="users_kyc_submit", request=KycSubmitInputSerializer,
                   responses={202: KycSubmitOutputSerializer, **error_responses(400, 401, 403, 404, 409, 422, 429)},
                   parameters=[IDEMPOTENCY_KEY], tags=["users"])
    @idempotent
    def post(self, request: Request, user_id: uuid.UUID) -> Response:
        profile = selectors.profile_get_own(actor=request.user, profile_id=user_id)
        submission = services.kyc_submit(profile=profile, **_validated(KycSubmitInputSerializer, request.data))
        return Response(KycSubmitOutputSerializer(submission).data, status=status.HTTP_202_ACCEPTED)
