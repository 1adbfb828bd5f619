from django.urls import path

from outbox.apis import CommandDetailApi

urlpatterns = [
    path("commands/<uuid:command_id>", CommandDetailApi.as_view(), name="command-detail"),
]
