"""Operating a POC from the console: restart and shut down sites and the server, remove a
site; each as real processes do it (re-exec with the same pid, exit, re-register)."""

from __future__ import annotations

import json
import time

import psutil

from runtime.federation.poc import admin_session
from tests.integration.conftest import procs_mentioning, run_flshell


def _sites(s) -> dict[str, dict]:
    return {x["name"]: x for x in s.list_sites()}


def _wait(cond, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_restart_and_shutdown_sites_and_server_remove_client(tmp_path):
    poc = tmp_path / "poc"
    assert run_flshell("poc", "prepare", "-n", "2", "-w", poc).returncode == 0
    r = run_flshell("poc", "start", "-w", poc)
    assert r.returncode == 0, r.stdout + r.stderr
    pids = {n: json.loads((poc / "pids" / f"{n}.json").read_text())["pid"]
            for n in ("server", "site-1", "site-2")}
    try:
        with admin_session(poc, timeout=10) as s:
            before = _sites(s)["site-1"]["registered_at"]
            r = run_flshell("--poc", poc, "-c", "restart -y client site-1")
            assert r.returncode == 0, r.stdout + r.stderr
            # the same process (re-executed in place) registers again
            _wait(lambda: _sites(s)["site-1"]["registered_at"] > before
                  and _sites(s)["site-1"]["status"] == "CONNECTED", "site-1 to re-register")
            assert psutil.Process(pids["site-1"]).is_running()

            r = run_flshell("--poc", poc, "-c", "shutdown -y client site-2")
            assert r.returncode == 0, r.stdout + r.stderr
            _wait(lambda: not psutil.pid_exists(pids["site-2"])
                  or psutil.Process(pids["site-2"]).status() == psutil.STATUS_ZOMBIE, "site-2 to exit")
            _wait(lambda: _sites(s)["site-2"]["status"] == "DISCONNECTED", "site-2 to say goodbye")

            r = run_flshell("--poc", poc, "-c", "remove_client -y site-2")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "site-2" not in _sites(s)

            started = json.loads((poc / "server" / "server.json").read_text())["started_at"]
            r = run_flshell("--poc", poc, "-c", "restart -y server")
            assert r.returncode == 0, r.stdout + r.stderr

        def restarted():
            try:
                state = json.loads((poc / "server" / "server.json").read_text())
            except (OSError, ValueError):
                return False
            return state["started_at"] > started and state["pid"] == pids["server"]

        _wait(restarted, "the server to restart in place")
        with admin_session(poc, timeout=10) as s:  # same address; site-1 reconnects by itself
            _wait(lambda: _sites(s).get("site-1", {}).get("status") == "CONNECTED",
                  "site-1 to reconnect to the restarted server")
        r = run_flshell("--poc", poc, "-c", "shutdown -y server")
        assert r.returncode == 0, r.stdout + r.stderr
        _wait(lambda: not psutil.pid_exists(pids["server"])
              or psutil.Process(pids["server"]).status() == psutil.STATUS_ZOMBIE, "the server to exit")
    finally:
        run_flshell("poc", "stop", "-w", poc)
    assert not procs_mentioning(str(poc))
