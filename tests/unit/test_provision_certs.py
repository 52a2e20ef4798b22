"""provision(): the kit layout, the certificates (subject, SANs, EKUs, chain) and key files."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning import ProvisionError, load_kit, parse_project, provision
from provisioning.certs import load_cert, load_key

PROJECT = """\
name: demo
validity_days: 30
participants:
  - {type: server, name: fl.example.com, fl_port: 8002, admin_port: 8003, host_names: [10.1.2.3]}
  - {type: client, name: site-1, org: org-a}
  - {type: client, name: site-2, org: org-b, allow_custom_code: false}
  - {type: admin, name: admin@org-a.com, org: org-a, role: project_admin}
  - {type: admin, name: lead@org-b.com, org: org-b, role: lead}
"""

LAYOUT = {
    "fl.example.com": {"startup": {"fed_server.json", "server.crt", "server.key", "rootCA.pem",
                                   "start.sh", "stop.sh", "signature.json"},
                       "local": {"authorization.json", "resources.json"}},
    "site-1": {"startup": {"fed_client.json", "client.crt", "client.key", "rootCA.pem",
                           "start.sh", "stop.sh", "signature.json"},
               "local": {"site_policy.json"}},
    "admin@org-a.com": {"startup": {"fed_admin.json", "client.crt", "client.key", "rootCA.pem",
                                    "flshell.sh", "signature.json"}},
}


@pytest.fixture(scope="module")
def prod(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prov") / "prod"
    kits = provision(parse_project(PROJECT), out)
    assert kits == {n: out / n for n in ("fl.example.com", "site-1", "site-2", "admin@org-a.com",
                                         "lead@org-b.com")}
    return out


def subject(cert: x509.Certificate, oid) -> list[str]:
    return [a.value for a in cert.subject.get_attributes_for_oid(oid)]


def eku(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_layout(prod):
    assert {p.name for p in prod.iterdir()} == {"ca", "fl.example.com", "site-1", "site-2",
                                                "admin@org-a.com", "lead@org-b.com"}
    assert {p.name for p in (prod / "ca").iterdir()} == {"rootCA.pem", "rootCA.key"}
    for name, dirs in LAYOUT.items():
        assert {p.name for p in (prod / name).iterdir()} == set(dirs)
        for d, files in dirs.items():
            assert {p.name for p in (prod / name / d).iterdir()} == files, (name, d)


def test_configs(prod):
    rd = lambda p: json.loads((prod / p).read_text())  # noqa: E731
    assert rd("fl.example.com/startup/fed_server.json") == {
        "project": "demo", "name": "fl.example.com", "host": "0.0.0.0", "fl_port": 8002,
        "admin_port": 8003, "role": "server", "sites": ["site-1", "site-2"],
        "admins": ["admin@org-a.com", "lead@org-b.com"]}
    assert rd("site-2/startup/fed_client.json") == {
        "project": "demo", "name": "site-2", "org": "org-b", "server": "fl.example.com:8002",
        "role": "client"}
    assert rd("lead@org-b.com/startup/fed_admin.json") == {
        "project": "demo", "name": "lead@org-b.com", "org": "org-b", "role": "lead",
        "server": "fl.example.com:8003"}
    assert rd("site-1/local/site_policy.json") == {"allow_custom_code": True}
    assert rd("site-2/local/site_policy.json") == {"allow_custom_code": False}
    assert rd("fl.example.com/local/resources.json")["max_jobs"] >= 1


def test_private_keys_are_0600_and_scripts_executable(prod):
    keys = list(prod.rglob("*.key"))
    assert len(keys) == 6
    for k in keys:
        assert stat.S_IMODE(k.stat().st_mode) == 0o600, k
    assert stat.S_IMODE((prod / "ca").stat().st_mode) == 0o700
    for s in [*prod.rglob("*.sh")]:
        assert s.stat().st_mode & stat.S_IXUSR, s


def test_ca_key_in_no_kit(prod):
    ca_pem = (prod / "ca" / "rootCA.key").read_bytes()
    ca_secret = load_key(prod / "ca" / "rootCA.key").private_numbers()
    kit_files = [p for p in prod.rglob("*") if p.is_file() and p.relative_to(prod).parts[0] != "ca"]
    assert len(kit_files) > 20 and not any(p.name == "rootCA.key" for p in kit_files)
    for p in kit_files:
        assert ca_pem.strip() not in p.read_bytes(), p
    kit_keys = [p for p in kit_files if b"PRIVATE KEY" in p.read_bytes()]
    assert sorted(p.name for p in kit_keys) == ["client.key"] * 4 + ["server.key"]
    for p in kit_keys:
        assert load_key(p).private_numbers() != ca_secret, p


def test_root_ca(prod):
    ca = load_cert(prod / "ca" / "rootCA.pem")
    assert ca.subject == ca.issuer
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    ca.verify_directly_issued_by(ca)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    for kit in LAYOUT:
        assert (prod / kit / "startup" / "rootCA.pem").read_bytes() == \
            (prod / "ca" / "rootCA.pem").read_bytes()


def test_server_certificate(prod):
    ca = load_cert(prod / "ca" / "rootCA.pem")
    cert = load_cert(prod / "fl.example.com" / "startup" / "server.crt")
    cert.verify_directly_issued_by(ca)
    assert subject(cert, NameOID.COMMON_NAME) == ["fl.example.com"]
    assert subject(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["server"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"fl.example.com", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")}
    assert eku(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 30 <= days <= 31


@pytest.mark.parametrize("kit, cn, org, ou", [
    ("site-1", "site-1", "org-a", "client"),
    ("site-2", "site-2", "org-b", "client"),
    ("admin@org-a.com", "admin@org-a.com", "org-a", "project_admin"),
    ("lead@org-b.com", "lead@org-b.com", "org-b", "lead"),
])
def test_participant_certificates(prod, kit, cn, org, ou):
    ca = load_cert(prod / "ca" / "rootCA.pem")
    cert = load_cert(prod / kit / "startup" / "client.crt")
    cert.verify_directly_issued_by(ca)
    assert subject(cert, NameOID.COMMON_NAME) == [cn]
    assert subject(cert, NameOID.ORGANIZATION_NAME) == [org]
    assert subject(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == [ou]
    assert eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    k = load_kit(prod / kit)
    assert (k.name, k.org, k.role) == (cn, org, ou)


def test_each_participant_has_its_own_key(prod):
    pubs = {load_cert(p).public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            for p in prod.rglob("*.crt")}
    assert len(pubs) == 5


def test_rsa_keys(tmp_path):
    text = PROJECT.replace("validity_days: 30", "key_type: rsa-2048").replace(
        "  - {type: admin, name: lead@org-b.com, org: org-b, role: lead}\n", "")
    kits = provision(parse_project(text), tmp_path / "prod")
    for name, kit_dir in kits.items():
        kit = load_kit(kit_dir)
        key = load_cert(kit.cert_path).public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    assert json.loads((kits["site-1"] / "startup" / "signature.json").read_text())["algorithm"] \
        == "rsa-pkcs1v15-sha256"


def test_refuses_non_empty_out_dir_unless_force(tmp_path):
    project = parse_project(PROJECT)
    out = tmp_path / "prod"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ProvisionError, match="not empty"):
        provision(project, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    provision(project, out, force=True)
    first_ca = (out / "ca" / "rootCA.pem").read_bytes()
    (out / "site-1" / "stray.txt").write_text("old")
    provision(project, out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"  # not ours: left alone
    assert not (out / "site-1" / "stray.txt").exists()  # our kit: replaced whole
    assert (out / "ca" / "rootCA.pem").read_bytes() != first_ca
    load_kit(out / "site-1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_empty_out_dir_is_fine(tmp_path):
    (tmp_path / "prod").mkdir()
    provision(parse_project(PROJECT), tmp_path / "prod")
    assert (tmp_path / "prod" / "ca" / "rootCA.key").is_file()
