"""Client identity: who signs a request, as the peer sees it.

Fabric identifies a client by its *creator bytes*: a serialized ``msp.SerializedIdentity`` holding the MSP id
and the PEM of the X.509 certificate. The peer uses these bytes verbatim for the transaction id and for signature
checks, so they are computed once and reused for every request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from fabric_protos.msp import identities_pb2


@dataclass(frozen=True)
class X509Identity:
    """An MSP id plus an X.509 certificate in PEM form (as cryptogen and Fabric CA write it)."""

    msp_id: str
    certificate: bytes
    creator: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.msp_id:
            raise ValueError("msp_id must not be empty")
        # Parse once so a wrong file fails at start-up, not at the first request.
        x509.load_pem_x509_certificate(self.certificate)
        creator = identities_pb2.SerializedIdentity(mspid=self.msp_id, id_bytes=self.certificate)
        object.__setattr__(self, "creator", creator.SerializeToString())

    @classmethod
    def from_pem_file(cls, msp_id: str, path: str | os.PathLike[str]) -> X509Identity:
        """Load the certificate from a PEM file (e.g. ``FABRIC_CERT_PATH``)."""
        return cls(msp_id, Path(path).read_bytes())

    def x509_certificate(self) -> x509.Certificate:
        """The parsed certificate (for expiry checks and display)."""
        return x509.load_pem_x509_certificate(self.certificate)
