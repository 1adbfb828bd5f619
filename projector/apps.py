from django.apps import AppConfig


class ProjectorConfig(AppConfig):
    name = "projector"
    verbose_name = "Projector (read models from the chain)"
    default_auto_field = "django.db.models.BigAutoField"
