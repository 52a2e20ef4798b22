"""`flshell` with no server: an embedded local federation (server + sites in the process) behind
the same admin port, for the console with no setup; jobs persist in its workspace."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np

from runtime.admin import Session
from runtime.federation import LocalFederation
from tests.integration.conftest import HELLO_NUMPY, JOBS, REPO, _cli_env, copy_job, edit_json, run_flshell


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


def _site_events(stream, site: str, until: set[str], timeout: float = 30) -> list[str]:
    """The statuses `stream` reports for `site`, read until one of `until` comes (or a hang)."""
    seen: list[str] = []
    done = threading.Event()
    timer = threading.Timer(timeout, lambda: (done.set(), stream.close()))
    timer.start()
    try:
        for event in stream:
            if event.type == "site_status" and event.get("site") == site:
                seen.append(event.get("status"))
                if event.get("status") in until:
                    break
    finally:
        timer.cancel()
    assert not done.is_set(), f"{site}: no {until} within {timeout}s (saw {seen})"
    return seen


def test_restart_client_brings_an_embedded_site_back_and_shutdown_says_goodbye(tmp_path):
    ws = tmp_path / "local"
    with LocalFederation(ws, n_sites=2) as fed, Session(fed.admin_address) as s:
        first = fed.agents[0]
        with s.watch(types=["site_status"]) as stream:
            s.operate("restart", "client", ["site-1"])
            seen = _site_events(stream, "site-1", {"CONNECTED"})
        assert seen == ["DISCONNECTED", "CONNECTED"]  # it left with a goodbye and registered again
        again = next(a for a in fed.agents if a.name == "site-1")
        assert again is not first and again.workspace == first.workspace and again.registered
        # jobs run on the restarted site: hello-numpy needs both sites
        job_id = s.submit_job(HELLO_NUMPY)
        assert s.wait_for_job(job_id, timeout=60)["status"] == "COMPLETED"
        assert "site-1: adding 1.0 each round" in "\n".join(s.tail_log(job_id, "site-1", lines=50))

        started = time.monotonic()
        with s.watch(types=["site_status"]) as stream:
            s.operate("shutdown", "client", ["site-2"])
            assert _site_events(stream, "site-2", {"DISCONNECTED", "STALE", "LOST"}) == ["DISCONNECTED"]
        assert time.monotonic() - started < 10  # at once, not after missed heartbeats
        assert {x["name"]: x["status"] for x in s.list_sites()} == {"site-1": "CONNECTED",
                                                                   "site-2": "DISCONNECTED"}
        assert [a.name for a in fed.agents] == ["site-1"]  # shut down for good


def test_stopping_leaves_a_running_job_running_and_it_resumes_the_next_time(tmp_path):
    ws = tmp_path / "local"
    job = copy_job(JOBS / "slow_site", tmp_path, "stalled")
    edit_json(job / "app" / "config" / "config_client.json",
              lambda d: d["executors"][0]["executor"]["args"].update(
                  script_args="--slow-site site-1 --sleep 2", launch_external_process=True))  # in the job's folder
    with LocalFederation(ws, n_sites=2) as fed, Session(fed.admin_address) as s:
        job_id = s.submit_job(job)
        deadline = time.monotonic() + 30
        while not (ws / "site-1" / "jobs" / job_id / "stalled").exists():  # round 1 is under way
            assert time.monotonic() < deadline, s.get_job(job_id)
            time.sleep(0.05)
        runner = fed.manager.runners[job_id]
    runner.wait(15)  # the job's thread saw its sites go
    from runtime.server.job_store import JobStore

    store = JobStore(ws / "server")
    try:
        rec = store.get(job_id)
        assert (rec.status, rec.reason) == ("RUNNING", None)  # not FAILED, no site blamed
    finally:
        store.close()
    with LocalFederation(ws, n_sites=2) as fed, Session(fed.admin_address) as s:
        done = s.wait_for_job(job_id, timeout=60)
        assert done["status"] == "COMPLETED", done
        assert not done.get("failed_sites")


def _stalling_job(tmp_path, seconds: float):
    """slow_site with site-1 stalling `seconds` in round 1, in its own process (in the job's folder)."""
    job = copy_job(JOBS / "slow_site", tmp_path, "stalled")
    edit_json(job / "app" / "config" / "config_client.json",
              lambda d: d["executors"][0]["executor"]["args"].update(
                  script_args=f"--slow-site site-1 --sleep {seconds:g}", launch_external_process=True))
    return job


def test_a_script_on_the_embedded_federation_leaves_unfinished_jobs_with_a_warning_and_y_aborts_them(tmp_path):
    ws = tmp_path / "local"
    job = _stalling_job(tmp_path, 60)
    r = run_flshell("--local-workspace", ws, "-c", f"submit_job {job}")
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = r.stdout.strip()
    assert f"warning: 1 job has not finished ({job_id[:8]} slow_site " in r.stderr
    assert f"goes on the next time flshell opens {ws}" in r.stderr
    # the next run takes it up again; with -y its end aborts it, by the admin, and says so
    r = run_flshell("--local-workspace", ws, "-y", "-c", "list_jobs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"job {job_id[:8]} (slow_site) ABORTED: aborted by admin" in r.stderr, r.stderr
    r = run_flshell("--local-workspace", ws, "--format", "json", "-c", f"show_job {job_id}")
    done = json.loads(r.stdout)
    assert (done["status"], done["reason"], done["failed_sites"]) == ("ABORTED", "aborted by admin", [])
    assert "warning" not in r.stderr  # nothing is left unfinished now
