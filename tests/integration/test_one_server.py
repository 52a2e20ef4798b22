"""One server per port and per workspace: a second `flshell server` (or embedded federation) on
the same ports or workspace is refused with the reason, instead of sharing them."""

from __future__ import annotations

import subprocess
import sys

from runtime.server.engine import ServerEngine
from runtime.server.workspace_lock import WorkspaceLocked
from runtime.transport.grpc_server import FLServer
from tests.integration.procfed import REPO, ProcFederation

import pytest


def flshell_server(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flshell.cli", "server", "--insecure", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_a_second_server_on_the_same_ports_is_refused(tmp_path):
    with ProcFederation(tmp_path) as fed:
        state = fed.start_server()
        fl_port = state["fl_address"].rsplit(":", 1)[1]
        admin_port = state["admin_address"].rsplit(":", 1)[1]
        r = flshell_server("--workspace", str(tmp_path / "other"), "--fl-port", fl_port)
        assert r.returncode != 0 and "ready" not in r.stdout, r.stdout
        assert f"site port on 127.0.0.1:{fl_port}: the port is in use" in r.stderr, r.stderr
        r = flshell_server("--workspace", str(tmp_path / "other"), "--admin-port", admin_port)
        assert r.returncode != 0, r.stdout
        assert f"admin port on 127.0.0.1:{admin_port}: the port is in use" in r.stderr, r.stderr
        assert fed.server.poll() is None  # the first one runs on, alone
        with fed.session() as s:
            assert s.system_info()["pid"] == fed.server.pid


def test_a_second_server_on_the_same_workspace_is_refused(tmp_path):
    with ProcFederation(tmp_path) as fed:
        fed.start_server()
        r = flshell_server("--workspace", str(fed.ws))  # other (free) ports, same workspace
        assert r.returncode != 0 and "ready" not in r.stdout, r.stdout
        assert f"workspace {fed.ws} is locked by pid {fed.server.pid}" in r.stderr, r.stderr
        fed.kill_server()  # a crash leaves no lock behind: the next server starts
        fed.start_server()


def test_the_lock_is_held_until_the_engine_closes(tmp_path):
    first = ServerEngine(tmp_path / "ws")
    with pytest.raises(WorkspaceLocked, match="is locked by pid"):
        ServerEngine(tmp_path / "ws")
    first.close()
    ServerEngine(tmp_path / "ws").close()


def test_two_embedded_consoles_on_one_workspace(tmp_path):
    first = subprocess.Popen([sys.executable, "-m", "flshell.cli", "--local-workspace",
                              str(tmp_path / "local"), "-c", "watch"],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "local" / "server" / "server.lock"
        import time

        deadline = time.monotonic() + 30
        while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.02)
        r = subprocess.run([sys.executable, "-m", "flshell.cli", "--local-workspace",
                            str(tmp_path / "local"), "-c", "list_jobs"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert f"is locked by pid {first.pid}" in r.stderr, r.stderr
    finally:
        first.kill()
        first.wait(10)


def test_binding_a_port_in_use_says_so(tmp_path):
    a = FLServer(ServerEngine(tmp_path / "a"), "127.0.0.1", 0).start()
    try:
        with pytest.raises(OSError, match=f"127.0.0.1:{a.port}: the port is in use"):
            FLServer(ServerEngine(tmp_path / "b"), "127.0.0.1", a.port)
    finally:
        a.stop(0)
