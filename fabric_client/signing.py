"""ECDSA signing exactly as Fabric peers verify it.

Every signed artefact is signed as ``sign(SHA-256(message))``: the caller hands over the 32-byte digest and the
signer produces a DER ``SEQUENCE{r, s}`` over it without hashing again. Fabric rejects signatures whose ``s`` is
in the upper half of the curve order ("low-S" rule, as in Bitcoin), and ``cryptography`` does not normalise, so
about half of its raw signatures would fail with a misleading "access denied"; :func:`to_low_s` fixes that.

A signer is any callable ``(digest: bytes) -> bytes``; pass your own (an HSM, a remote signing service) for
offline signing, or use :class:`EcdsaSigner` for a PKCS#8 PEM key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

Signer = Callable[[bytes], bytes]
"""Signs a SHA-256 digest and returns a DER ECDSA signature with low S."""

CURVE_ORDERS: dict[str, int] = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16
    ),
}

_PREHASHED_SHA256 = ec.ECDSA(Prehashed(hashes.SHA256()))


def curve_order(curve: ec.EllipticCurve) -> int:
    """The group order ``n`` of a curve Fabric supports (P-256, P-384)."""
    try:
        return CURVE_ORDERS[curve.name]
    except KeyError:
        raise ValueError(f"unsupported curve {curve.name}: Fabric MSPs accept P-256 and P-384") from None


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for a leading 0: stays positive
    return b"\x02" + bytes([len(body)]) + body


def _split(signature: bytes) -> tuple[int, int]:
    """``(r, s)`` of a DER ``SEQUENCE{INTEGER r, INTEGER s}``.

    P-256/P-384 signatures are shorter than 128 bytes, so every length is one byte; reading them directly
    is several times cheaper than a generic decode, and signing is what a submitter spends its CPU on.
    """
    if len(signature) < 8 or signature[0] != 0x30 or signature[1] & 0x80 or signature[2] != 0x02:
        return decode_dss_signature(signature)
    s_tag = 4 + signature[3]
    if signature[s_tag] != 0x02 or signature[s_tag + 1] & 0x80:
        return decode_dss_signature(signature)
    r = int.from_bytes(signature[4:s_tag], "big")
    return r, int.from_bytes(signature[s_tag + 2 : s_tag + 2 + signature[s_tag + 1]], "big")


def to_low_s(signature: bytes, order: int) -> bytes:
    """Return ``signature`` (DER) with ``s`` replaced by ``n - s`` when ``s > n/2``."""
    r, s = _split(signature)
    if s <= order // 2:
        return signature
    body = _der_integer(r) + _der_integer(order - s)
    return b"\x30" + bytes([len(body)]) + body


def is_low_s(signature: bytes, order: int) -> bool:
    """True when the DER signature's ``s`` is at most ``n/2`` (what peers require)."""
    return _split(signature)[1] <= order // 2


class EcdsaSigner:
    """Signs SHA-256 digests with an EC private key (P-256 or P-384), DER encoded, low S."""

    __slots__ = ("_half_order", "_key", "_order", "_size")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self._order = curve_order(private_key.curve)
        self._size = (self._order.bit_length() + 7) // 8
        self._half_order = (self._order // 2).to_bytes(self._size, "big")

    @classmethod
    def from_pem(cls, pem: bytes, password: bytes | None = None) -> EcdsaSigner:
        """Load a PKCS#8 (or SEC1) PEM private key."""
        key = serialization.load_pem_private_key(pem, password=password)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("Fabric client keys must be EC private keys")
        return cls(key)

    @classmethod
    def from_pem_file(cls, path: str | os.PathLike[str], password: bytes | None = None) -> EcdsaSigner:
        """Load the key from a PEM file (e.g. ``FABRIC_KEY_PATH``)."""
        return cls.from_pem(Path(path).read_bytes(), password)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def __call__(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("expected a 32-byte SHA-256 digest")
        signature = self._key.sign(digest, _PREHASHED_SHA256)
        # Decide on the DER bytes of s, without integers: signing is what a submitter spends its CPU on.
        # A shorter s is below n/2; a 0x00-padded one has its top bit set, above n/2 for P-256 and P-384.
        s_at = 4 + signature[3]
        s_size = signature[s_at + 1]
        if s_size < self._size or (
            s_size == self._size and signature[s_at + 2 : s_at + 2 + s_size] <= self._half_order
        ):
            return signature
        return to_low_s(signature, self._order)
