"""Faults that must not lose a job: a server SIGKILLed mid-job and restarted resumes the job on
`flshell client` sites, also when a site's old job process is slow to go."""

from __future__ import annotations

import os
import signal

import numpy as np

from tests.integration.procfed import ProcFederation, slow_hello, wait_until

START = np.arange(1, 10, dtype=np.float64).reshape(3, 3)


def rounds_done(fed: ProcFederation, job_id: str) -> int:
    with fed.session() as s:
        return len(s.get_job(job_id)["rounds"])


def test_a_resumed_job_restarts_on_a_site_whose_old_job_process_is_still_ending(tmp_path):
    """The old process of the job on site-1 is frozen (SIGSTOP) when the server dies, so it is
    still there when the restarted server sends the job's start again: the site must start
    the job anew once the old process is gone, not drop the start (the job would fail after
    the ready timeout)."""
    job = slow_hello(tmp_path, rounds=4, sleep=0.3)
    with ProcFederation(tmp_path) as fed:
        fed.start_server()
        for name in ("site-1", "site-2"):
            fed.start_client(name)
        fed.wait_sites(2)
        with fed.session() as s:
            job_id = s.submit_job(job)
        wait_until(lambda: rounds_done(fed, job_id) >= 1, 60, "round 1 to complete")
        old = wait_until(lambda: fed.job_process("site-1", job_id), 30, "site-1's job process")
        os.kill(old.pid, signal.SIGSTOP)  # it cannot exit until the agent SIGKILLs it
        fed.kill_server()
        fed.start_server(same_ports=True)
        with fed.session() as s:
            final = s.wait_for_job(job_id, timeout=120)
            rounds = s.get_job(job_id)["rounds"]
        assert final["status"] == "COMPLETED", (final, fed.site_log("site-1")[-3000:])
        assert [r["round"] for r in rounds] == [0, 1, 2, 3]
        assert all(r["sites_failed"] == [] for r in rounds[1:]), rounds
        assert not old.is_running() or old.status() == "zombie"
        log = fed.site_log("site-1")
        assert "starts again here" in log, log[-3000:]
        # the agent says it killed the old process itself, not "SIGKILL (out of memory?)"
        assert f"process {old.pid} ended (was killed by SIGKILL, sent by site-1's agent " \
               "(SIGKILL: the server forgot its jobs))" in log, log[-3000:]
        assert "out of memory" not in log
        with np.load(fed.ws / "jobs" / job_id / "result" / "global_model.npz",
                     allow_pickle=False) as d:
            np.testing.assert_allclose(d["weights"], START + 4 * (1 + 2) / 2, atol=1e-12)
