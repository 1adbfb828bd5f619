"""The application's routes plus ``bench/bare``: the floor ``GET /api/v1/users/me`` is compared with.

The bare view is plain DRF + simplejwt: authenticate the bearer token (simplejwt's user lookup), read one row by
primary key, return two fields. Everything else (middleware, renderer, gunicorn) is shared with the real view.
"""

from django.urls import include, path
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from identity.models import UserProfile


class BareProfileView(APIView):
    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        row = UserProfile.objects.values("user_id", "status").get(pk=request.user.pk)
        return Response({"id": str(row["user_id"]), "status": row["status"]})


urlpatterns = [
    path("bench/bare", BareProfileView.as_view()),
    path("", include("gxbackend.urls")),
]
