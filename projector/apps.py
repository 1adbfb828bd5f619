from django.apps import AppConfig


class ProjectorConfig(AppConfig):
    name = "projector"
    verbose_name = "Projector (read models from the chain)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from gxbackend.health import register_readiness_check
        from projector.selectors import projection_lag_check

        # Lag is reported on /readyz always, but fails it only when the operator opts in: the API serves
        # login, registration and profiles without any projection (docs/DESIGN.md §5).
        register_readiness_check("projection_lag", projection_lag_check,
                                 gates=lambda: settings.READYZ_FAIL_ON_PROJECTION_LAG)
