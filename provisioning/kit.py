"""Startup kits: the signed manifest (signature.json), its verification, and loading a kit."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from provisioning import certs
from provisioning.identity import ADMIN_ROLES, Identity, identity_from_cert

SIGNATURE_FILE = "signature.json"
CA_FILE = "rootCA.pem"
FORMAT_VERSION = 1
CONFIG_FILES = {"fed_server.json": "server", "fed_client.json": "client",
                "fed_admin.json": "admin"}
CERT_FILES = {"server": ("server.crt", "server.key"), "client": ("client.crt", "client.key"),
              "admin": ("client.crt", "client.key")}


class KitError(Exception):
    """A startup kit that must not be used; the message names the file(s) at fault.

    `problems` lists (file name, what is wrong) pairs, e.g. ("fed_client.json", "changed").
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    @property
    def files(self) -> list[str]:
        return [f for f, _ in self.problems]


def startup_dir(kit_dir: str | Path) -> Path:
    """`kit_dir` may be the participant folder (prod/site-1) or its startup/ folder."""
    p = Path(kit_dir)
    if (p / "startup").is_dir():
        return p / "startup"
    if p.name == "startup" and p.is_dir():
        return p
    raise KitError(f"{p}: not a startup kit (no startup/ folder)", [(str(p), "not a kit")])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _payload(manifest: dict[str, Any]) -> bytes:
    """The bytes the CA signs: the manifest without its signature, in canonical JSON."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_startup(startup: Path, ca_key: certs.PrivateKey) -> dict[str, Any]:
    """Write startup/signature.json: sha256 of every other file there, signed by the CA key."""
    files = {p.name: _sha256(p) for p in sorted(startup.iterdir())
             if p.is_file() and p.name != SIGNATURE_FILE}
    manifest: dict[str, Any] = {"format_version": FORMAT_VERSION,
                                "algorithm": certs.signature_algorithm(ca_key), "files": files}
    _, sig = certs.sign(ca_key, _payload(manifest))
    manifest["signature"] = base64.b64encode(sig).decode()
    (startup / SIGNATURE_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def verify_kit(kit_dir: str | Path) -> dict[str, str]:
    """Check every file of the kit's startup/ against its signed signature.json.

    Returns the verified {file name: sha256}. Raises KitError naming each file that was
    changed, is missing or is extra, or signature.json itself when its signature does not
    match the kit's rootCA.pem.
    """
    startup = startup_dir(kit_dir)
    sig_path = startup / SIGNATURE_FILE
    if not sig_path.is_file():
        raise KitError(f"{startup}: {SIGNATURE_FILE} is missing: not a signed startup kit",
                       [(SIGNATURE_FILE, "missing")])
    try:
        manifest = json.loads(sig_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        algorithm = manifest["algorithm"]
        signature = base64.b64decode(manifest["signature"], validate=True)
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ValueError("'files' is not a mapping of names to digests")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KitError(f"{sig_path}: unreadable manifest ({e})",
                       [(SIGNATURE_FILE, "unreadable")]) from None

    problems: list[tuple[str, str]] = []
    present = {p.name: p for p in startup.iterdir() if p.name != SIGNATURE_FILE}
    for name in sorted(set(files) | set(present)):
        path = present.get(name)
        if path is None:
            problems.append((name, "missing"))
        elif name not in files:
            problems.append((name, "extra (not in signature.json)"))
        elif path.is_symlink() or not path.is_file():
            problems.append((name, "not a regular file"))
        elif _sha256(path) != files[name]:
            problems.append((name, "changed (its sha256 differs from signature.json)"))
    if problems:
        listed = "; ".join(f"{n}: {what}" for n, what in problems)
        raise KitError(f"startup kit {startup} was altered: {listed}. Refusing to use it; "
                       f"get a fresh kit from the project admin.", problems)
    try:
        ca = certs.load_cert(startup / CA_FILE)
        ca_public: Any = ca.public_key()
        certs.verify(ca_public, algorithm, _payload(manifest), signature)
    except (InvalidSignature, ValueError) as e:
        why = str(e) or "the signature does not match rootCA.pem"
        raise KitError(f"{sig_path}: invalid signature ({why}); the manifest was altered or "
                       f"signed by another CA. Refusing to use the kit.",
                       [(SIGNATURE_FILE, "bad signature")]) from None
    return dict(files)


@dataclass(frozen=True)
class Kit:
    """A verified startup kit. `role`, `name` and `org` come from its certificate."""

    root: Path  # the participant folder: prod/<name>
    startup: Path
    type: str  # server | client | admin
    config: dict[str, Any]  # the fed_server.json / fed_client.json / fed_admin.json dict
    cert_path: Path
    key_path: Path
    ca_path: Path
    identity: Identity = field(repr=False)

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def org(self) -> str:
        return self.identity.org

    @property
    def role(self) -> str:
        """"server", "client", or the admin's role (project_admin, org_admin, lead, member)."""
        return self.identity.role

    @property
    def local(self) -> Path:
        return self.root / "local"

    def cert_pem(self) -> bytes:
        return self.cert_path.read_bytes()

    def key_pem(self) -> bytes:
        return self.key_path.read_bytes()

    def ca_pem(self) -> bytes:
        return self.ca_path.read_bytes()

    def server_credentials(self) -> Any:
        """grpc.ServerCredentials that require a client certificate from the project CA."""
        import grpc

        return grpc.ssl_server_credentials([(self.key_pem(), self.cert_pem())],
                                           root_certificates=self.ca_pem(),
                                           require_client_auth=True)

    def channel_credentials(self) -> Any:
        """grpc.ChannelCredentials presenting this kit's certificate, trusting the project CA."""
        import grpc

        return grpc.ssl_channel_credentials(root_certificates=self.ca_pem(),
                                            private_key=self.key_pem(),
                                            certificate_chain=self.cert_pem())


def load_kit(kit_dir: str | Path, *, check_expiry: bool = True) -> Kit:
    """Verify a startup kit (see verify_kit), then read its config, certificate and key."""
    startup = startup_dir(kit_dir)
    verify_kit(startup)
    configs = [n for n in CONFIG_FILES if (startup / n).is_file()]
    if len(configs) != 1:
        raise KitError(f"{startup}: expected one of {', '.join(CONFIG_FILES)}, found "
                       f"{', '.join(configs) or 'none'}", [(startup.name, "no config")])
    cfg_name = configs[0]
    kind = CONFIG_FILES[cfg_name]
    try:
        config = json.loads((startup / cfg_name).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("expected a JSON object")
    except ValueError as e:
        raise KitError(f"{startup / cfg_name}: not valid JSON ({e})", [(cfg_name, "invalid")]) \
            from None
    cert_name, key_name = CERT_FILES[kind]
    cert_path, key_path, ca_path = startup / cert_name, startup / key_name, startup / CA_FILE
    try:
        ca = certs.load_cert(ca_path)
        cert = certs.load_cert(cert_path)
        key = certs.load_key(key_path)
    except ValueError as e:
        raise KitError(f"{startup}: unreadable certificate or key ({e})",
                       [(cert_name, "unreadable")]) from None
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError) as e:
        raise KitError(f"{cert_path}: not issued by the kit's {CA_FILE} ({e or 'bad signature'})",
                       [(cert_name, "wrong issuer")]) from None
    cert_public: Any = cert.public_key()
    if certs.public_der(key.public_key()) != certs.public_der(cert_public):
        raise KitError(f"{key_path}: does not belong to {cert_name}", [(key_name, "wrong key")])
    ident = identity_from_cert(cert)
    expected_role = config.get("role") if kind == "admin" else kind
    if config.get("name") != ident.name or ident.role != expected_role or \
            (kind == "admin" and ident.role not in ADMIN_ROLES):
        raise KitError(f"{startup / cfg_name}: name/role {config.get('name')!r}/"
                       f"{expected_role!r} do not match {cert_name} ({ident.name!r}/"
                       f"{ident.role!r})", [(cfg_name, "does not match the certificate")])
    if check_expiry:
        now = dt.datetime.now(dt.timezone.utc)
        if now > cert.not_valid_after_utc:
            raise KitError(f"{cert_path}: expired on {cert.not_valid_after_utc:%Y-%m-%d}; ask "
                           f"the project admin for a new kit", [(cert_name, "expired")])
        if now < cert.not_valid_before_utc:
            start = f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            raise KitError(f"{cert_path}: not valid before {start} (check this host's clock)",
                           [(cert_name, "not yet valid")])
    return Kit(root=startup.parent, startup=startup, type=kind, config=config,
               cert_path=cert_path, key_path=key_path, ca_path=ca_path, identity=ident)
