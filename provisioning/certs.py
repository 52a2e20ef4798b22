"""Keys and X.509 certificates: the project's root CA and one certificate per participant."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey]

CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates start this much before "now"
SERVER_ROLE, CLIENT_ROLE = "server", "client"  # the OU of the server's and the sites' certs


def new_key(key_type: str = "ec") -> PrivateKey:
    """A fresh private key: "ec" (P-256) or "rsa" (2048 bits)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key type: expected ec or rsa, got {key_type!r}")


def _name(cn: str, org: str = "", ou: str = "") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name(attrs)


def _window(days: int, not_before: dt.datetime | None,
            not_after: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.timezone.utc)
    start = not_before or now - CLOCK_SKEW
    return start, not_after or now + dt.timedelta(days=days)


def make_ca(project: str, key: PrivateKey, days: int = 365) -> x509.Certificate:
    """The self-signed root CA (CA:true, may sign certificates but not CAs below it)."""
    name = _name(f"{project} root CA", org=project)
    start, end = _window(days, None, None)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))


def issue_cert(ca_cert: x509.Certificate, ca_key: PrivateKey, public_key: PublicKey, *,
               cn: str, org: str = "", ou: str = "", server: bool = False,
               dns_names: tuple[str, ...] = (), ip_addresses: tuple[str, ...] = (),
               emails: tuple[str, ...] = (), days: int = 365,
               not_before: dt.datetime | None = None,
               not_after: dt.datetime | None = None) -> x509.Certificate:
    """A leaf certificate signed by the CA: clientAuth, plus serverAuth when `server`.

    `not_before` / `not_after` override the validity window (tests make expired certificates).
    """
    start, end = _window(days, not_before, not_after)
    eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server \
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    b = (x509.CertificateBuilder()
         .subject_name(_name(cn, org, ou)).issuer_name(ca_cert.subject)
         .public_key(public_key)
         .serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=is_rsa,
                                      content_commitment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                        critical=False))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
    sans += [x509.RFC822Name(e) for e in emails]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def server_sans(name: str, host: str = "", extra: tuple[str, ...] = ()) -> tuple[tuple[str, ...],
                                                                              tuple[str, ...]]:
    """(DNS names, IP addresses) for the server: its name, `extra`, localhost and 127.0.0.1."""
    dns: list[str] = []
    ips: list[str] = []
    candidates = [name, *extra, "localhost", "127.0.0.1"]
    if host and host not in ("0.0.0.0", "::"):  # a specific bind address is a name too
        candidates.append(host)
    for item in candidates:
        try:
            ip = str(ipaddress.ip_address(item))
        except ValueError:
            if item.lower() not in (d.lower() for d in dns):
                dns.append(item)
        else:
            if ip not in ips:
                ips.append(ip)
    return tuple(dns), tuple(ips)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_der(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def load_cert(path_or_pem: Path | bytes) -> x509.Certificate:
    data = path_or_pem if isinstance(path_or_pem, bytes) else Path(path_or_pem).read_bytes()
    return x509.load_pem_x509_certificate(data)


def load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"{path}: expected an EC or RSA private key")
    return key


def signature_algorithm(key: PrivateKey) -> str:
    return "ecdsa-sha256" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa-pkcs1v15-sha256"


def sign(key: PrivateKey, data: bytes) -> tuple[str, bytes]:
    """(algorithm name, signature) of `data` with an EC or RSA key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return signature_algorithm(key), key.sign(data, ec.ECDSA(hashes.SHA256()))
    return signature_algorithm(key), key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verify(public_key: PublicKey, algorithm: str, data: bytes, signature: bytes) -> None:
    """Raise cryptography's InvalidSignature (or ValueError) unless `signature` matches."""
    if algorithm == "ecdsa-sha256" and isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif algorithm == "rsa-pkcs1v15-sha256" and isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError(f"signature algorithm {algorithm!r} does not fit the CA's "
                         f"{type(public_key).__name__}")


def subject_attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    v = values[0].value if values else ""
    return v.decode() if isinstance(v, bytes) else str(v)
