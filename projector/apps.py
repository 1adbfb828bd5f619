from django.apps import AppConfig


class ProjectorConfig(AppConfig):
    name = "projector"
    verbose_name = "Projector (read models from the chain)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from gxbackend.health import register_readiness_check
        from projector.selectors import projection_lag_check

        register_readiness_check("projection_lag", projection_lag_check)
