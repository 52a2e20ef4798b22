"""A server process SIGKILLed mid-job and restarted on the same workspace resumes the job after
its last completed round: the job store and the round checkpoint survive, sites reconnect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.admin import Session
from runtime.client.agent import SiteAgent
from runtime.client.apps import DownloadedApps
from runtime.client.sitelog import LogSink
from runtime.transport.grpc_client import GrpcSiteTransport
from tests.integration.procfed import slow_hello

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello-numpy"


def start_server(ws: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    (ws / "server.json").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flshell.server_cmd", "--workspace", str(ws), "--insecure",
         "--heartbeat-interval", "0.5", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            state = json.loads((ws / "server.json").read_text())
            if state["pid"] == proc.pid:
                return proc, state
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("server did not write server.json in 30 s")


def test_server_killed_after_round_2_resumes_at_round_3(tmp_path):
    ws = tmp_path / "server"
    job = slow_hello(tmp_path, rounds=5, sleep=0.4)
    proc, state = start_server(ws)
    fl_port = state["fl_address"].rsplit(":", 1)[1]
    admin_port = state["admin_address"].rsplit(":", 1)[1]
    sink = LogSink(interval=0.2)
    agents, transports = [], []
    try:
        for name in ("site-1", "site-2"):
            t = GrpcSiteTransport(state["fl_address"])
            transports.append(t)
            a = SiteAgent(name, t, DownloadedApps(t, name, tmp_path / name), tmp_path / name,
                          sink, poll_timeout=0.5)
            a.start(heartbeats=True)
            agents.append(a)
        with Session(state["admin_address"]) as s:
            job_id = s.submit_job(job)
            deadline = time.monotonic() + 60
            while len(s.get_job(job_id)["rounds"]) < 2:
                assert time.monotonic() < deadline, s.get_job(job_id)
                time.sleep(0.02)
            before = {r["round"]: r["recorded_at"] for r in s.get_job(job_id)["rounds"]}
        os.kill(proc.pid, signal.SIGKILL)  # no drain, no goodbye: a crash
        proc.wait(10)
        assert set(before) == {0, 1}, before

        proc, state = start_server(ws, "--fl-port", fl_port, "--admin-port", admin_port)
        with Session(state["admin_address"]) as s:
            final = s.wait_for_job(job_id, timeout=90)
            assert final["status"] == "COMPLETED", final
            rounds = s.get_job(job_id)["rounds"]
        assert [r["round"] for r in rounds] == [0, 1, 2, 3, 4]  # exactly 5, each once
        for r in rounds[:2]:  # rounds 1-2 were not re-run: their records are the old ones
            assert r["recorded_at"] == before[r["round"]]
        model = ws / "jobs" / job_id / "result" / "global_model.npz"
        with np.load(model, allow_pickle=False) as d:
            w = d["weights"]
        start = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
        np.testing.assert_allclose(w, start + 5 * (1 + 2) / 2, atol=1e-12)  # no round twice
        server_log = (ws / "jobs" / job_id / "logs" / "server.log").read_text()
        assert "resuming after round 2" in server_log
        started = [line for line in server_log.splitlines() if "round 1/5 started" in line]
        assert len(started) == 1, started
    finally:
        for a in agents:
            a.stop(timeout=5)
        for t in transports:
            t.close()
        sink.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
