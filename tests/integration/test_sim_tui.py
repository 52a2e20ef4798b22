"""`flshell sim --tui`: the simulation runs with the TUI attached to its admin port; the port
stays up after the job ends (the TUI stays on the finished job) until the TUI quits, and
quitting early aborts the job. The TUI itself is tested in test_tui_live.py; here a person's
session stands in for it: it attaches to the same address and quits when it decides to."""

from __future__ import annotations

import flshell.tui_cmd as tui_cmd
from flshell.cli import build_parser
from flshell.sim_cmd import run_sim
from runtime.admin import Session
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
