"""A TLS handshake the server refuses (plain text, another CA's certificate) is in the server's
log and its audit log, with gRPC's reason: `flshell server --startup KIT` as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import grpc

from provisioning import parse_project, provision
from runtime.proto import fl_pb2
from tests.integration.secure_fed import (FL_SERVICE, PROJECT, REPO, SERVER, call_raw, channel,
                                          make_prod)


def test_refused_handshakes_are_logged_and_audited(tmp_path):
    prod = make_prod(tmp_path)
    provision(parse_project(PROJECT), tmp_path / "other")  # same names, another CA
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "flshell.cli", "server", "--startup",
                             str(prod / SERVER), "--workspace", str(ws), "--fl-port", "0",
                             "--admin-port", "0"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (ws / "server.json").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        fl = json.loads((ws / "server.json").read_text())["fl_address"]
        request = fl_pb2.SiteRequest(site="site-1", json="{}").SerializeToString()
        ca = (prod / "ca" / "rootCA.pem").read_bytes()
        theirs = tmp_path / "other" / "site-1" / "startup"
        peers = [None,  # plain text
                 grpc.ssl_channel_credentials(root_certificates=ca),  # no certificate
                 grpc.ssl_channel_credentials(  # a certificate of another CA
                     root_certificates=ca, private_key=(theirs / "client.key").read_bytes(),
                     certificate_chain=(theirs / "client.crt").read_bytes())]
        for creds in peers:
            with channel(fl, creds) as ch:
                assert call_raw(ch, FL_SERVICE, "Heartbeat", request, timeout=5) == \
                    grpc.StatusCode.UNAVAILABLE

        def refused() -> list[dict]:
            audit = ws / "audit.log"
            lines = audit.read_text().splitlines() if audit.is_file() else []
            return [a for a in map(json.loads, lines) if a.get("command") == "tls_handshake"]

        while len(refused()) < 3:
            assert time.monotonic() < deadline, (ws / "audit.log").read_text()
            time.sleep(0.05)
        reasons = [a["reason"] for a in refused()]
        assert any("WRONG_VERSION_NUMBER" in r for r in reasons), reasons  # plain text
        assert any("PEER_DID_NOT_RETURN_A_CERTIFICATE" in r for r in reasons), reasons
        assert any("CERTIFICATE_VERIFY_FAILED" in r for r in reasons), reasons  # another CA
        assert all(a["verdict"] == "refused" and "peer" in a for a in refused())
        log = (ws / "log.txt").read_text()
        assert log.count("refused a TLS handshake") >= 3, log[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Handshake failed" in err  # the real stderr still gets gRPC's own lines
