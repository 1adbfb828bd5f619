"""Routes of svc-identity, included under ``api/v1/`` (no trailing slashes, as docs/DESIGN.md §2 writes them)."""

from django.urls import path

from identity import apis

urlpatterns = [
    path("users", apis.UserRegisterApi.as_view(), name="users-register"),
    path("users/me", apis.UserMeApi.as_view(), name="users-me"),
    path("users/<uuid:user_id>", apis.UserDetailApi.as_view(), name="users-detail"),
    path("users/<uuid:user_id>/kyc", apis.KycSubmitApi.as_view(), name="users-kyc"),
    path("auth/login", apis.LoginApi.as_view(), name="auth-login"),
    path("auth/refresh", apis.RefreshApi.as_view(), name="auth-refresh"),
    path("auth/logout", apis.LogoutApi.as_view(), name="auth-logout"),
]
