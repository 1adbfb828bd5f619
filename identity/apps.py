from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "identity"
    verbose_name = "Identity and KYC"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from identity.services import kyc_onchain_registration_failed
        from outbox.models import CommandType
        from outbox.services import register_failure_reaction

        # A refused CREATE_USER must not leave the person APPROVED_PENDING_ONCHAIN forever.
        register_failure_reaction(CommandType.CREATE_USER, kyc_onchain_registration_failed)
