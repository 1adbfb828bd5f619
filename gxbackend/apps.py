from django.apps import AppConfig


class GxbackendConfig(AppConfig):
    name = "gxbackend"
    verbose_name = "GX backend"
    default_auto_field = "django.db.models.BigAutoField"
