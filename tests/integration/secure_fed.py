"""Shared pieces of the security tests: a provisioned project, a mutual-TLS server in this
process (real gRPC on 127.0.0.1, free ports), site processes started with their kits, and
raw gRPC calls that bypass the client classes (to send what a well-behaved client never would).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import grpc

from provisioning import certs, load_kit, load_policy, parse_project, provision

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello-numpy"

PROJECT = """\
name: sec
participants:
  - {type: server, name: localhost, host: 127.0.0.1, fl_port: 8002, admin_port: 8003}
  - {type: client, name: site-1, org: org-a}
  - {type: client, name: site-2, org: org-b}
  - {type: client, name: site-3, org: org-b, allow_custom_code: false}
  - {type: client, name: fuzzer, org: org-b}
  - {type: admin, name: admin@org-a.com, org: org-a, role: project_admin}
  - {type: admin, name: orgadmin@org-a.com, org: org-a, role: org_admin}
  - {type: admin, name: lead@org-a.com, org: org-a, role: lead}
  - {type: admin, name: lead@org-b.com, org: org-b, role: lead}
  - {type: admin, name: member@org-a.com, org: org-a, role: member}
"""
SERVER = "localhost"
ADMINS = {"project_admin": "admin@org-a.com", "org_admin": "orgadmin@org-a.com",
          "lead_a": "lead@org-a.com", "lead_b": "lead@org-b.com", "member": "member@org-a.com"}
FL_SERVICE = "flshell.fl.FLService"
ADMIN_SERVICE = "flshell.admin.AdminService"


def make_prod(root: Path) -> Path:
    """Provision PROJECT into root/prod (EC keys: fast); returns the prod folder."""
    provision(parse_project(PROJECT), root / "prod")
    return root / "prod"


def start_server(prod: Path, workspace: Path, **config: Any):
    """A ServerProcess with the server kit: mutual TLS on both ports (free ports), the kit's
    policy, audit.log in `workspace`."""
    from runtime.federation.process import ServerConfig, ServerProcess

    kit = load_kit(prod / SERVER)
    policy = load_policy(kit.local / "authorization.json")
    cfg = ServerConfig(workspace=str(workspace), host="127.0.0.1", fl_port=0, admin_port=0,
                       heartbeat_interval=1.0, insecure=False, **config)
    return ServerProcess(cfg, kit=kit, policy=policy).start()


def site_process(prod: Path, name: str, server_address: str, workspace: Path) -> subprocess.Popen:
    """`flshell client --startup prod/<name>` as a real process (its job processes too)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    workspace.mkdir(parents=True, exist_ok=True)
    out = open(workspace / "stdout.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "flshell.cli", "client", "--startup", str(prod / name),
             "--workspace", str(workspace), "--server", server_address,
             "--heartbeat-interval", "1"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
    finally:
        out.close()


def stop_processes(procs: Iterable[subprocess.Popen], timeout: float = 15) -> None:
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def wait_for(cond, what: str, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---- credentials -----------------------------------------------------------------------------

def kit_credentials(kit_dir: Path) -> grpc.ChannelCredentials:
    return load_kit(kit_dir).channel_credentials()


def forged_credentials(prod: Path, cn: str, *, org: str = "org-a", ou: str = "client",
                       expired: bool = False) -> grpc.ChannelCredentials:
    """A certificate signed by the project's own CA key (prod/ca), but not one provisioning
    made: another name, or already expired."""
    ca_cert = certs.load_cert(prod / "ca" / "rootCA.pem")
    ca_key = certs.load_key(prod / "ca" / "rootCA.key")
    key = certs.new_key("ec")
    window: dict[str, Any] = {}
    if expired:
        now = dt.datetime.now(dt.timezone.utc)
        window = {"not_before": now - dt.timedelta(days=30), "not_after": now - dt.timedelta(days=1)}
    cert = certs.issue_cert(ca_cert, ca_key, key.public_key(), cn=cn, org=org, ou=ou, **window)
    return grpc.ssl_channel_credentials(root_certificates=certs.cert_pem(ca_cert),
                                        private_key=certs.key_pem(key),
                                        certificate_chain=certs.cert_pem(cert))


def channel(address: str, creds: grpc.ChannelCredentials | None) -> grpc.Channel:
    opts = [("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    return grpc.secure_channel(address, creds, opts) if creds is not None else \
        grpc.insecure_channel(address, opts)


# ---- raw calls -------------------------------------------------------------------------------

FL_UNARY = ("Register", "Heartbeat", "ReportJob", "LogMetrics", "ShipLog", "Goodbye")
FL_SERVER_STREAM = ("Poll", "GetJob")
FL_CLIENT_STREAM = ("SubmitResult",)
FL_METHODS = FL_UNARY + FL_SERVER_STREAM + FL_CLIENT_STREAM
ADMIN_UNARY = ("Hello", "Jobs", "JobDetails", "AbortJob", "DeleteJob", "CloneJob", "Sites",
               "SystemInfo", "Operate", "GpuHistory")
ADMIN_SERVER_STREAM = ("DownloadJob", "TailLog", "Events")
ADMIN_CLIENT_STREAM = ("SubmitJob",)
ADMIN_METHODS = ADMIN_UNARY + ADMIN_SERVER_STREAM + ADMIN_CLIENT_STREAM


def call_raw(ch: grpc.Channel, service: str, method: str, payload: bytes | list[bytes],
             timeout: float = 5.0) -> grpc.StatusCode:
    """Send raw bytes (one message, or a list for a client stream); the status it ended with."""
    path = f"/{service}/{method}"
    client_stream = method in FL_CLIENT_STREAM + ADMIN_CLIENT_STREAM
    server_stream = method in FL_SERVER_STREAM + ADMIN_SERVER_STREAM
    messages = payload if isinstance(payload, list) else [payload]
    try:
        if client_stream:
            ch.stream_unary(path)(iter(messages), timeout=timeout)
        elif server_stream:
            for _ in ch.unary_stream(path)(messages[0], timeout=timeout):
                pass
        else:
            ch.unary_unary(path)(messages[0], timeout=timeout)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call succeeded")
