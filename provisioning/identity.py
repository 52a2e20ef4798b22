"""Who is on the other end of a mutual-TLS gRPC call, read from its verified certificate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from provisioning.certs import CLIENT_ROLE, SERVER_ROLE, subject_attr

ADMIN_ROLES = ("project_admin", "org_admin", "lead", "member")


class IdentityError(PermissionError):
    """The call carries no verified client certificate, or one without a usable identity."""


@dataclass(frozen=True)
class Identity:
    name: str  # the certificate's CN: a site name, the server's host, an admin's e-mail
    org: str  # O
    role: str  # OU: "server", "client" (a site), or an admin role (project_admin, ...)

    @property
    def kind(self) -> str:
        """"server", "client" or "admin"."""
        return self.role if self.role in (SERVER_ROLE, CLIENT_ROLE) else "admin"

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


def identity_from_cert(cert: x509.Certificate | bytes) -> Identity:
    """Identity(CN, O, OU) of a certificate (or its PEM bytes)."""
    if isinstance(cert, (bytes, bytearray)):
        cert = x509.load_pem_x509_certificate(bytes(cert))
    name = subject_attr(cert, NameOID.COMMON_NAME)
    if not name:
        raise IdentityError("the certificate has no common name (CN)")
    return Identity(name=name, org=subject_attr(cert, NameOID.ORGANIZATION_NAME),
                    role=subject_attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME))


def peer_identity(context: Any) -> Identity:
    """The identity of a gRPC servicer's caller, from the client certificate TLS verified.

    `context` is the grpc.ServicerContext. Raises IdentityError on a plain-text call or one
    without a client certificate (a server with require_client_auth=True never lets those in).
    """
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise IdentityError("no verified client certificate on this call (is the port TLS "
                            "with require_client_auth?)")
    ident = identity_from_cert(pems[0])
    cns = auth.get("x509_common_name") or []
    if cns and cns[0].decode(errors="replace") != ident.name:  # both come from the same cert
        raise IdentityError(f"certificate CN mismatch: {cns[0]!r} vs {ident.name!r}")
    return ident
