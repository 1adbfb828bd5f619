"""Devnet's certificates and keys, created once under the data directory and reused on restart.

Layout (the ``client/`` pair is what ``FABRIC_CERT_PATH``/``FABRIC_KEY_PATH`` point at)::

    msp/ca.crt  msp/ca.key          the Org1MSP certificate authority (membership is "chains to this CA")
    peer/cert.pem  peer/key.pem     the peer identity that signs endorsements
    client/cert.pem  client/key.pem a client user (X.509 certificate, PKCS#8 EC key), as cryptogen writes
    tls/ca.crt  tls/server.crt  tls/server.key  tls/client.crt  tls/client.key   a separate TLS CA (optional TLS)
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)
TLS_SERVER_NAMES = ("localhost", "peer0.org1.example.com")


@dataclass(frozen=True)
class Credentials:
    """Paths of every file devnet creates; :func:`ensure_credentials` fills them."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "msp" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "msp" / "ca.key"

    @property
    def peer_cert(self) -> Path:
        return self.root / "peer" / "cert.pem"

    @property
    def peer_key(self) -> Path:
        return self.root / "peer" / "key.pem"

    @property
    def user_cert(self) -> Path:
        return self.root / "client" / "cert.pem"

    @property
    def user_key(self) -> Path:
        return self.root / "client" / "key.pem"

    @property
    def tls_ca_cert(self) -> Path:
        return self.root / "tls" / "ca.crt"

    @property
    def tls_ca_key(self) -> Path:
        return self.root / "tls" / "ca.key"

    @property
    def tls_server_cert(self) -> Path:
        return self.root / "tls" / "server.crt"

    @property
    def tls_server_key(self) -> Path:
        return self.root / "tls" / "server.key"

    @property
    def tls_client_cert(self) -> Path:
        return self.root / "tls" / "client.crt"

    @property
    def tls_client_key(self) -> Path:
        return self.root / "tls" / "client.key"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (what cryptogen and Fabric CA write)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "org1.example.com")]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def new_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    name = _name(common_name)
    certificate = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    unit: str | None = None,
    server_names: tuple[str, ...] = (),
    client_auth: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate signed by ``ca`` (TLS server names become DNS/IP subject alternative names)."""
    key = new_key()
    builder = _builder(_name(common_name, unit), ca.subject, key.public_key()).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    )
    usages = []
    if server_names:
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in server_names]
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _write_pair(cert_path: Path, key_path: Path, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    _write(key_path, key_pem(pair[1]), private=True)
    _write(cert_path, pair[0].public_bytes(serialization.Encoding.PEM))


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    return x509.load_pem_x509_certificate(cert_path.read_bytes()), key


def ensure_credentials(root: Path) -> Credentials:
    """Create whatever is missing under ``root``; existing files are kept (a restart keeps identities)."""
    files = Credentials(root)
    if not files.ca_cert.exists():
        _write_pair(files.ca_cert, files.ca_key, new_ca("ca.org1.example.com"))
    ca = _load_ca(files.ca_cert, files.ca_key)
    if not files.peer_cert.exists():
        _write_pair(files.peer_cert, files.peer_key, issue(*ca, "peer0.org1.example.com", unit="peer"))
    if not files.user_cert.exists():
        _write_pair(files.user_cert, files.user_key, issue(*ca, "User1@org1.example.com", unit="client"))
    if not files.tls_ca_cert.exists():
        _write_pair(files.tls_ca_cert, files.tls_ca_key, new_ca("tlsca.org1.example.com"))
    tls_ca = _load_ca(files.tls_ca_cert, files.tls_ca_key)
    if not files.tls_server_cert.exists():
        _write_pair(
            files.tls_server_cert, files.tls_server_key,
            issue(*tls_ca, "peer0.org1.example.com", server_names=TLS_SERVER_NAMES),
        )
    if not files.tls_client_cert.exists():
        _write_pair(
            files.tls_client_cert, files.tls_client_key,
            issue(*tls_ca, "User1@org1.example.com", client_auth=True),
        )
    return files
