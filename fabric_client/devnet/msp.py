"""Membership and signature checks, as a peer's MSP and policy evaluation make them.

A creator is accepted when its MSP id is known, its certificate chains to that MSP's CA and is within its
validity period, and its ECDSA signature over SHA-256(message) verifies with a *low* S. Any failure is a
:class:`AccessDenied`, which callers word per RPC as the real peer does (docs/FABRIC_GATEWAY.md §7b).
Verified identities are cached by their creator bytes, so a busy client costs one certificate check.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from fabric_protos.msp import identities_pb2
from google.protobuf.message import DecodeError

from fabric_client.signing import curve_order, is_low_s

_ECDSA_SHA256_PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
_CACHE_LIMIT = 10_000


class AccessDenied(Exception):
    """The creator is unknown, invalid, or its signature does not verify."""

    def __init__(self, msp_id: str, reason: str) -> None:
        super().__init__(reason)
        self.msp_id = msp_id
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    msp_id: str
    public_key: ec.EllipticCurvePublicKey
    order: int
    not_after: datetime.datetime


class Membership:
    """The MSPs of a channel: MSP id → root CA certificate."""

    def __init__(self, roots: dict[str, x509.Certificate]) -> None:
        self._roots = roots
        self._cache: dict[bytes, Identity] = {}
        self._lock = threading.Lock()

    def identity(self, creator: bytes) -> Identity:
        """Deserialize and validate a creator (``SerializedIdentity`` bytes)."""
        cached = self._cache.get(creator)
        now = datetime.datetime.now(datetime.UTC)
        if cached is not None and now <= cached.not_after:
            return cached
        try:
            serialized = identities_pb2.SerializedIdentity.FromString(creator)
        except DecodeError:
            raise AccessDenied("", "could not deserialize identity") from None
        msp_id = serialized.mspid
        root = self._roots.get(msp_id)
        if root is None:
            raise AccessDenied(msp_id, f"MSP {msp_id} is not defined on channel")
        try:
            certificate = x509.load_pem_x509_certificate(serialized.id_bytes)
            if certificate.issuer != root.subject:
                raise ValueError("issuer is not the MSP root")
            root_key = root.public_key()
            if not isinstance(root_key, ec.EllipticCurvePublicKey):
                raise ValueError("only EC certificate authorities are supported")
            root_key.verify(
                certificate.signature,
                certificate.tbs_certificate_bytes,
                ec.ECDSA(certificate.signature_hash_algorithm),  # type: ignore[arg-type]
            )
            public_key = certificate.public_key()
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise ValueError("only EC identities are supported")
            order = curve_order(public_key.curve)
        except (ValueError, InvalidSignature) as exc:
            raise AccessDenied(msp_id, f"the supplied identity is not valid: {exc}") from None
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise AccessDenied(msp_id, "the supplied identity is not valid: certificate has expired")
        identity = Identity(msp_id, public_key, order, certificate.not_valid_after_utc)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[creator] = identity
        return identity

    def verify(self, creator: bytes, message: bytes, signature: bytes) -> Identity:
        """Validate ``creator`` and its signature over SHA-256(``message``); low S required."""
        identity = self.identity(creator)
        verify_signature(identity, message, signature)
        return identity


def verify_signature(identity: Identity, message: bytes, signature: bytes) -> None:
    """ECDSA-SHA256 verification with Fabric's low-S rule ("Invalid S. Must be smaller than half the order")."""
    try:
        if not is_low_s(signature, identity.order):
            raise AccessDenied(identity.msp_id, "Invalid S. Must be smaller than half the order")
        identity.public_key.verify(signature, hashlib.sha256(message).digest(), _ECDSA_SHA256_PREHASHED)
    except (ValueError, InvalidSignature):
        raise AccessDenied(identity.msp_id, "the creator's signature over the proposal is not valid") from None
