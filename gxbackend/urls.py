from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from gxbackend import health, metrics

urlpatterns = [
    path("health", health.health, name="health"),
    path("livez", health.livez, name="livez"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include("identity.urls")),
    path("api/v1/", include("outbox.urls")),
    path("api/v1/", include("projector.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "gxbackend.exceptions.handler400"
handler403 = "gxbackend.exceptions.handler403"
handler404 = "gxbackend.exceptions.handler404"
handler500 = "gxbackend.exceptions.handler500"
