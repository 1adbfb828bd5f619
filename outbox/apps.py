from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox (commands to the chain)"
    default_auto_field = "django.db.models.BigAutoField"
