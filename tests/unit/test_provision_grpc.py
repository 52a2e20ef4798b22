"""Kits' gRPC credentials: mutual TLS on loopback, peer_identity from the verified certificate."""

from __future__ import annotations

import datetime as dt
import json
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from provisioning import IdentityError, load_kit, parse_project, peer_identity, provision
from provisioning import certs

PROJECT = """\
name: demo
participants:
  - {type: server, name: fl.example.com, fl_port: 8002, admin_port: 8003}
  - {type: client, name: site-1, org: org-a}
  - {type: admin, name: lead@org-b.com, org: org-b, role: lead}
  - {type: admin, name: ann@org-a.com, org: org-a, role: member}
"""
METHOD = "/flshell.test.Who/Ask"
TIMEOUT = 10


@pytest.fixture(scope="module")
def kits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("grpc")
    out = provision(parse_project(PROJECT), root / "prod")
    other = provision(parse_project(PROJECT), root / "other")  # same names, another CA
    out["other-site-1"] = other["site-1"]
    out["ca"] = root / "prod" / "ca"
    return out


@pytest.fixture(scope="module")
def server(kits):
    """A TLS server with the server kit's credentials; answers with the caller's identity."""
    calls: list[str] = []

    def ask(request: bytes, context) -> bytes:
        try:
            ident = peer_identity(context)
        except IdentityError as e:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        calls.append(ident.name)
        return json.dumps({"name": ident.name, "org": ident.org, "role": ident.role,
                           "kind": ident.kind}).encode()

    handler = grpc.method_handlers_generic_handler(
        "flshell.test.Who", {"Ask": grpc.unary_unary_rpc_method_handler(ask)})
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = srv.add_secure_port("127.0.0.1:0", load_kit(kits["fl.example.com"]).server_credentials())
    srv.start()
    yield port, calls
    srv.stop(grace=None)


def ask(target: str, creds: grpc.ChannelCredentials | None, options=()) -> dict:
    channel = grpc.secure_channel(target, creds, options=options) if creds else \
        grpc.insecure_channel(target)
    with channel:
        return json.loads(channel.unary_unary(METHOD)(b"", timeout=TIMEOUT))


@pytest.mark.parametrize("kit, expected", [
    ("site-1", {"name": "site-1", "org": "org-a", "role": "client", "kind": "client"}),
    ("lead@org-b.com", {"name": "lead@org-b.com", "org": "org-b", "role": "lead",
                        "kind": "admin"}),
    ("ann@org-a.com", {"name": "ann@org-a.com", "org": "org-a", "role": "member",
                       "kind": "admin"}),
])
def test_identity_comes_from_the_certificate(server, kits, kit, expected):
    port, _ = server
    assert ask(f"127.0.0.1:{port}", load_kit(kits[kit]).channel_credentials()) == expected
    assert ask(f"localhost:{port}", load_kit(kits[kit]).channel_credentials()) == expected


def test_server_name_is_checked(server, kits):
    """The server's certificate covers its name: pinning that name works; another name fails."""
    port, _ = server
    creds = load_kit(kits["site-1"]).channel_credentials()
    ok = ask(f"127.0.0.1:{port}", creds, [("grpc.ssl_target_name_override", "fl.example.com")])
    assert ok["name"] == "site-1"
    with pytest.raises(grpc.RpcError) as e:
        ask(f"127.0.0.1:{port}", creds, [("grpc.ssl_target_name_override", "evil.example.com")])
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def refused(port: int, creds: grpc.ChannelCredentials | None, calls: list[str]) -> None:
    before = len(calls)
    with pytest.raises(grpc.RpcError) as e:
        ask(f"127.0.0.1:{port}", creds)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value  # refused at the handshake
    assert len(calls) == before  # the handler never ran


def test_wrong_ca_is_refused(server, kits):
    port, calls = server
    refused(port, load_kit(kits["other-site-1"]).channel_credentials(), calls)


def test_plain_text_is_refused(server):
    port, calls = server
    refused(port, None, calls)


def test_tls_without_client_certificate_is_refused(server, kits):
    port, calls = server
    refused(port, grpc.ssl_channel_credentials(load_kit(kits["site-1"]).ca_pem()), calls)


def test_expired_certificate_is_refused(server, kits):
    port, calls = server
    ca_dir = kits["ca"]
    ca, ca_key = certs.load_cert(ca_dir / "rootCA.pem"), certs.load_key(ca_dir / "rootCA.key")
    key = certs.new_key()
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    cert = certs.issue_cert(ca, ca_key, key.public_key(), cn="site-1", org="org-a", ou="client",
                            not_before=past - dt.timedelta(days=30), not_after=past)
    creds = grpc.ssl_channel_credentials(certs.cert_pem(ca), certs.key_pem(key),
                                         certs.cert_pem(cert))
    refused(port, creds, calls)


def test_peer_identity_without_certificate():
    class Ctx:
        def auth_context(self):
            return {"transport_security_type": [b"insecure"]}

    with pytest.raises(IdentityError, match="no verified client certificate"):
        peer_identity(Ctx())
