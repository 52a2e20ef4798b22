"""`flshell sim --tui`: the simulation runs with the TUI attached to its admin port; the port
stays up after the job ends (the TUI stays on the finished job) until the TUI quits, and
quitting early aborts the job. The TUI itself is tested in test_tui_live.py; here a person's
session stands in for it: it attaches to the same address and quits when it decides to."""

from __future__ import annotations

import re
import threading
import time

import flshell.tui_cmd as tui_cmd
from flshell.cli import build_parser
from flshell.sim_cmd import run_sim
from runtime.admin import AdminError, Session
from runtime.sim.simulator import Simulator
from tests.integration.conftest import HELLO_NUMPY


def test_the_admin_port_outlives_the_job_until_the_tui_quits(tmp_path, monkeypatch):
    seen = {}

    def user(address, **kw):  # watches the job end, then looks again before quitting
        with Session(address) as s:
            (job,) = s.list_jobs()
            seen["final"] = s.wait_for_job(job["job_id"], timeout=60)["status"]
            seen["after"] = s.get_job(job["job_id"])["status"]  # still served after the end
        return 0

    monkeypatch.setattr(tui_cmd, "attach", user)
    args = build_parser().parse_args(["sim", str(HELLO_NUMPY), "-n", "3", "-w", str(tmp_path / "ws"), "--tui"])
    assert run_sim(args) == 0
    assert seen == {"final": "COMPLETED", "after": "COMPLETED"}


def test_quitting_the_tui_early_aborts_the_job(tmp_path, monkeypatch):
    monkeypatch.setattr(tui_cmd, "attach", lambda address, **kw: 0)  # quits at once
    args = build_parser().parse_args(["sim", str(HELLO_NUMPY), "-n", "2", "--rounds", "500",
                                      "-w", str(tmp_path / "ws"), "--tui"])
    assert run_sim(args) == 3  # ABORTED


def test_wall_time_is_the_jobs_not_the_time_the_tui_stayed_open(tmp_path, monkeypatch, capsys):
    seen = {}

    def user(address, **kw):  # watches the job end, then keeps looking at it for a while
        with Session(address) as s:
            (job,) = s.list_jobs()
            s.wait_for_job(job["job_id"], timeout=60)
            seen["ended_by"] = time.monotonic()
        time.sleep(2.0)  # the person reads the finished job (what is measured, not a wait)
        return 0

    monkeypatch.setattr(tui_cmd, "attach", user)
    args = build_parser().parse_args(["sim", str(HELLO_NUMPY), "-n", "2", "-w", str(tmp_path / "ws"), "--tui"])
    called = time.monotonic()
    assert run_sim(args) == 0
    out = capsys.readouterr().out
    (wall,) = re.findall(r"^wall time\s+([0-9.]+)s$", out, re.M)
    # the job started after run_sim was called and ended before the user saw it end
    assert float(wall) <= seen["ended_by"] - called, out


def test_watchers_learn_that_the_simulation_ended_before_its_admin_port_closes(tmp_path):
    """What an attached TUI or console sees last: the job's final status, then the announcement
    that this server is going away for good (so it need not reconnect), then the stream ends."""
    sim = Simulator(HELLO_NUMPY, workspace=tmp_path / "ws", n_clients=2, rounds=2, admin_port=0)
    sim.prepare()
    sim.start()
    events: list = []
    ended = threading.Event()
    session = Session(sim.admin_server.address)
    stream = session.watch(since=0, types=["job_status", "operator"])  # since=0: from the start

    def read() -> None:
        try:
            for ev in stream:
                events.append(ev)
        except AdminError:
            pass  # the port closed: the end of the stream
        finally:
            ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        result = sim.wait(timeout=60)
        assert ended.wait(30), "the watch did not end when the admin port closed"
    finally:
        stream.close()
        session.close()
    assert result.status == "COMPLETED"
    kinds = [(e.type, e.data.get("status"), e.data.get("by")) for e in events]
    final = [k for k in kinds if k[0] == "job_status" and k[1] == "COMPLETED"]
    assert final, kinds
    last = events[-1]
    assert last.type == "operator", kinds
    assert last.data["action"] == "shutdown" and last.data["target"] == "server", last.data
    assert last.data["by"] == "simulator" and last.data["final"] is True, last.data
    assert last.data["status"] == "COMPLETED" and last.data["job_id"] == result.job_id, last.data
    assert "the simulation ended" in last.data["reason"], last.data
