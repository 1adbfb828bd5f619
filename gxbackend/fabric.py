"""The only bridge from Django settings to ``fabric_client`` (which imports no Django)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _read(setting: str) -> bytes:
    path = getattr(settings, setting)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImproperlyConfigured(f"{setting}={path} cannot be read ({exc.strerror}): mount the Fabric credentials "
                                   "or start devnet once to create them") from None


def gateway_from_settings():
    """A connected ``fabric_client`` Gateway for ``FABRIC_PEER_ENDPOINT`` with the configured identity.

    Raises ``ImproperlyConfigured`` naming the setting when a credential file is missing.
    """
    from fabric_client.gateway import Timeouts, connect
    from fabric_client.identity import X509Identity
    from fabric_client.signing import EcdsaSigner

    identity = X509Identity(msp_id=settings.FABRIC_MSP_ID, certificate=_read("FABRIC_CERT_PATH"))
    signer = EcdsaSigner.from_pem(_read("FABRIC_KEY_PATH"))
    tls_root = _read("FABRIC_TLS_CA_PATH") if settings.FABRIC_TLS_CA_PATH else None
    return connect(
        settings.FABRIC_PEER_ENDPOINT,
        identity,
        signer,
        tls_root_cert=tls_root,
        tls_server_name=settings.FABRIC_TLS_SERVER_NAME,
        timeouts=Timeouts(
            evaluate=settings.FABRIC_EVALUATE_TIMEOUT,
            endorse=settings.FABRIC_ENDORSE_TIMEOUT,
            submit=settings.FABRIC_SUBMIT_TIMEOUT,
            commit_status=settings.FABRIC_COMMIT_STATUS_TIMEOUT,
        ),
    )


def contract_from_settings(gateway):
    """The GX chaincode on the configured channel (contract name is part of each call: 'Contract:Fn')."""
    return gateway.network(settings.FABRIC_CHANNEL).contract(settings.FABRIC_CHAINCODE)
