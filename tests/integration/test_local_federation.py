"""`flshell` with no server: an embedded local federation (server + sites in the process) behind
the same admin port, for the console with no setup; jobs persist in its workspace."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from runtime.admin import Session
from runtime.server.local import LocalFederation
from tests.integration.conftest import HELLO_NUMPY, REPO, _cli_env, run_flshell


def test_local_federation_runs_a_job_and_keeps_it_across_restarts(tmp_path):
    ws = tmp_path / "local"
    with LocalFederation(ws, n_sites=3) as fed, Session(fed.admin_address) as s:
        assert sorted(x["name"] for x in s.list_sites()) == ["site-1", "site-2", "site-3"]
        job_id = s.submit_job(HELLO_NUMPY)
        assert s.wait_for_job(job_id, timeout=60)["status"] == "COMPLETED"
        log = "\n".join(s.tail_log(job_id, "site-3", lines=50))
        assert "site-3: adding 3.0 each round" in log  # the site's script output, via the server
    with np.load(ws / "server" / "jobs" / job_id / "result" / "global_model.npz") as d:
        start = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
        np.testing.assert_allclose(d["weights"], start + 5 * (1 + 2 + 3) / 3, atol=1e-12)
    with LocalFederation(ws, n_sites=2) as fed, Session(fed.admin_address) as s:
        (job,) = s.list_jobs()  # the store outlives the process that made it
        assert (job["job_id"], job["status"]) == (job_id, "COMPLETED")


def test_flshell_without_a_server_runs_commands_on_the_embedded_federation(tmp_path):
    ws = tmp_path / "local"
    r = run_flshell("--local-workspace", ws, "--sites", 3,
                    "-c", f"submit_job {HELLO_NUMPY}; wait_job last --timeout 60")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "COMPLETED" in r.stdout
    # commands from stdin when it is not a terminal
    proc = subprocess.run([sys.executable, "-m", "flshell.cli", "--local-workspace", str(ws),
                           "--format", "json"], input="list_jobs\n", cwd=REPO, env=_cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"COMPLETED"' in proc.stdout and "hello-numpy" in proc.stdout
