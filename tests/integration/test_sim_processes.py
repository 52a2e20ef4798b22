"""`flshell sim --processes`: sites in worker processes that reach the embedded server over gRPC.

Real worker processes on 127.0.0.1 (port 0): the same final model as the in-process run, many
workers starting at once on this small host all connect, a killed or broken worker is reported
by the sites it hosted (and the job goes on or fails per min_clients, never hangs), and no
worker outlives its simulation.
"""

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

from runtime.sim.simulator import Simulator
from tests.integration.conftest import (
    HELLO_NUMPY,
    REPO,
    copy_job,
    describe,
    edit_json,
    flat,
    only_job,
    procs_mentioning,
    sim,
)

WORKER = "runtime.sim.worker"


def _model(result_dir: Path) -> dict[str, np.ndarray]:
    with np.load(result_dir / "global_model.npz", allow_pickle=False) as saved:
        return {k: saved[k] for k in saved.files}


def _rounds(job_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((job_dir / "rounds").glob("round_*.json"))]


@pytest.fixture(autouse=True)
def no_worker_left():
    yield
    deadline = time.monotonic() + 5
    while procs_mentioning(WORKER) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert procs_mentioning(WORKER) == [], "a simulator worker outlived its simulation"


def test_hello_numpy_in_two_workers_matches_the_in_process_run(tmp_path):
    threads = sim(HELLO_NUMPY, "-n", 8, "-q", "-w", tmp_path / "threads")
    workers = sim(HELLO_NUMPY, "-n", 8, "-t", 2, "--processes", "-w", tmp_path / "workers")
    assert threads.returncode == 0, describe(threads)
    assert workers.returncode == 0, describe(workers)
    assert "on 8 sites in 2 worker processes" in workers.stdout, describe(workers)
    assert "8/8 sites connected in 2 worker processes" in workers.stdout, describe(workers)
    a, b = only_job(tmp_path / "threads"), only_job(tmp_path / "workers")
    ma, mb = _model(a / "result"), _model(b / "result")
    assert ma.keys() == mb.keys() == {"weights"}
    # hello-numpy adds integers in float64: exact whatever order the results arrive in
    np.testing.assert_array_equal(ma["weights"], mb["weights"])
    assert all(len(r["sites_ok"]) == 8 for r in _rounds(b)), _rounds(b)
    # two worker processes hosted the eight sites, four each, and logged to their own files
    assert sorted(p.name for p in (tmp_path / "workers" / "workers").iterdir()) == \
        ["worker-1.log", "worker-2.log"]


def test_hello_pt_in_two_workers_matches_the_in_process_run(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="hello-pt needs torch (installed by .ci/run)")
    # torch's float32 kernels give other last bits with other thread counts, and workers get
    # CPUs/T threads each: one thread everywhere, so the training is the same in both runs
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    export = tmp_path / "hello-pt"
    job_py = REPO / "examples" / "hello-pt" / "job.py"
    subprocess.run([sys.executable, str(job_py), "--n_clients", "8", "--num_rounds", "2",
                    "--samples", "128", "--export", "--export-dir", str(export)],
                   check=True, capture_output=True, timeout=120, cwd=REPO)
    threads = sim(export, "-n", 8, "-q", "-w", tmp_path / "threads")
    workers = sim(export, "-n", 8, "-t", 2, "--processes", "-q", "-w", tmp_path / "workers")
    assert threads.returncode == 0, describe(threads)
    assert workers.returncode == 0, describe(workers)
    a = torch.load(only_job(tmp_path / "threads") / "result" / "global_model.pt", weights_only=True)
    b = torch.load(only_job(tmp_path / "workers") / "result" / "global_model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        # the same training, and the mean does not depend on which worker answered first
        assert torch.equal(a[key], b[key]), key
    log = (tmp_path / "workers" / "site-3" / "jobs" / only_job(tmp_path / "workers").name /
           "log.txt").read_text()
    assert "site-3: training on cpu" in log


def test_32_workers_starting_at_once_all_connect(tmp_path):
    """32 worker processes on a 2-core host: slow to start, but every site connects and every
    round hears from all 32 (no fixed connect timeout that a loaded host misses)."""
    ws = tmp_path / "ws"
    proc = sim(HELLO_NUMPY, "-n", 32, "-t", 32, "--processes", "--rounds", 2, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert "32/32 sites connected in 32 worker processes" in proc.stdout, describe(proc)
    assert "lost:" not in proc.stdout
    rounds = _rounds(only_job(ws))
    assert [len(r["sites_ok"]) for r in rounds] == [32, 32], rounds


def _slow_job(tmp_path: Path, jobs: Path, min_clients: int, slow: str = "site-3") -> Path:
    """slow_site with FedAvg's min_clients set and `slow` ("all": every site) stalling. (Its
    `stalled` marker file lands in the worker's working folder; the tests watch the log.)"""
    job = copy_job(jobs / "slow_site", tmp_path)

    def server(cfg):
        cfg["workflows"][0]["args"]["min_clients"] = min_clients

    def client(cfg):
        cfg["executors"][0]["executor"]["args"]["script_args"] = f"--slow-site {slow} --sleep 60"

    edit_json(job / "app" / "config" / "config_server.json", server)
    edit_json(job / "app" / "config" / "config_client.json", client)
    return job


def _wait_stalled(ws: Path, *sites: str) -> None:
    """One of the sites' scripts says it stalls (in its log, which the worker flushes every
    second)."""
    deadline = time.monotonic() + 60
    while not any(f"{site}: stalling" in p.read_text()
                  for site in sites for p in ws.glob(f"{site}/jobs/*/log.txt")):
        assert time.monotonic() < deadline, f"{sites} never reached their task"
        time.sleep(0.1)


def _kill_worker_of(simulator: Simulator, site: str) -> int:
    """SIGKILL the worker hosting `site` once one of its sites stalls inside its first task
    (the sites of a worker take turns: site-3 may be the one inside)."""
    (worker,) = [w for w in simulator.pool.workers if site in w.sites]
    _wait_stalled(simulator.workspace, *worker.sites)
    os.kill(worker.pid, signal.SIGKILL)
    return worker.pid


def _run_killing(job: Path, ws: Path, workers: int, rounds: int, site: str):
    """Simulate `job` on 4 sites in `workers` worker processes, killing the worker of `site`
    once one of its sites stalls: (the result, the killed worker's pid)."""
    simulator = Simulator(job, workspace=ws, n_clients=4, threads=workers, processes=True,
                          rounds=rounds)
    simulator.prepare()
    simulator.start()
    try:
        pid = _kill_worker_of(simulator, site)
    finally:
        result = simulator.wait(120)
    return result, pid


def test_a_killed_worker_is_reported_by_site_and_the_round_goes_on(tmp_path, jobs):
    """slow_site: site-3 stalls in round 1 and its worker is killed; min_clients=3 of 4, so the
    job completes without it, and the result names the site and how its worker ended."""
    job = _slow_job(tmp_path, jobs, min_clients=3)
    result, pid = _run_killing(job, tmp_path / "ws", workers=4, rounds=2, site="site-3")
    assert result.status == "COMPLETED", (result.reason, result.failure_details)
    assert list(result.lost_sites) == ["site-3"]
    why = result.lost_sites["site-3"]
    assert f"worker 3 (pid {pid}, sites site-3) was killed by SIGKILL" in why, why
    first, second = _rounds(result.job_dir)
    assert first["sites_failed"] == ["site-3"] and sorted(first["sites_ok"]) == \
        ["site-1", "site-2", "site-4"]
    assert "site-3" not in second["sites_ok"]
    assert "killed by SIGKILL" in (result.server_log.read_text())


def test_a_killed_worker_fails_the_job_when_min_clients_cannot_be_met(tmp_path, jobs):
    """Every site stalls; the worker hosting site-1 and site-3 is killed (2 workers, 4 sites);
    min_clients=4, so the job fails, naming the sites, instead of hanging."""
    job = _slow_job(tmp_path, jobs, min_clients=4, slow="all")
    result, pid = _run_killing(job, tmp_path / "ws", workers=2, rounds=1, site="site-1")
    assert result.status == "FAILED", result
    assert sorted(result.lost_sites) == ["site-1", "site-3"]
    assert f"worker 1 (pid {pid}, sites site-1, site-3) was killed by SIGKILL" in \
        result.lost_sites["site-1"]
    assert "site-1" in result.reason and "site-3" in result.reason, result.reason


def test_workers_that_cannot_start_are_reported_by_site(tmp_path):
    """Every site's workspace is a file, not a folder: every worker fails as it starts; the
    result names each worker's sites and the error from its stderr, at once."""
    job = copy_job(HELLO_NUMPY, tmp_path)
    simulator = Simulator(job, workspace=tmp_path / "ws", n_clients=4, threads=2, processes=True)
    simulator.prepare()
    for i in range(1, 5):
        (tmp_path / "ws" / f"site-{i}").write_text("not a folder\n")
    t0 = time.monotonic()
    simulator.start()
    result = simulator.wait(60)
    assert time.monotonic() - t0 < 30
    assert result.status == "FAILED", result
    assert sorted(result.lost_sites) == ["site-1", "site-2", "site-3", "site-4"]
    why = result.lost_sites["site-2"]
    assert "worker 2 (pid" in why and "sites site-2, site-4) exited with code 1" in why, why
    assert "site-2: its workspace" in why and "cannot be made" in why  # from its stderr


def test_cli_summary_names_the_lost_sites(tmp_path, jobs):
    """The CLI run of a job whose site-2 worker is killed: the summary has a 'lost:' line."""
    job = _slow_job(tmp_path, jobs, min_clients=1, slow="site-2")
    ws = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flshell.cli", "sim", str(job), "-n", "2", "--processes",
         "--rounds", "1", "-w", str(ws)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1"})
    try:
        _wait_stalled(ws, "site-2")
        (worker,) = [p for p in procs_mentioning(WORKER) if "site-2" in " ".join(p.cmdline())]
        worker.kill()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "lost: worker 2" in flat(out) and "sites site-2) was killed by SIGKILL" in flat(out), out


def test_worker_sites_heartbeat_their_process_and_gpu_group(tmp_path, jobs):
    """-gpu 0 on this GPU-less host: each site heartbeats through its worker; the admin port
    shows its worker's pid and why it has no GPU, and the console's `gpu` says so by site."""
    from runtime.admin import Session

    job = _slow_job(tmp_path, jobs, min_clients=1, slow="all")
    simulator = Simulator(job, workspace=tmp_path / "ws", n_clients=2, gpu="0", rounds=1,
                          admin_port=0)
    simulator.prepare()
    simulator.start()
    try:
        (worker,) = simulator.pool.workers
        assert worker.sites == ["site-1", "site-2"] and worker.gpu == "0"
        address = simulator.admin_server.address
        session = Session(address)
        deadline = time.monotonic() + 30
        while True:
            sites = {s["name"]: s for s in session.list_sites()}
            infos = [sites.get(n, {}).get("info", {}) for n in ("site-1", "site-2")]
            if all("worker_pid" in i for i in infos):
                break
            assert time.monotonic() < deadline, sites
            time.sleep(0.2)
        session.close()
        for info in infos:
            assert info["worker_pid"] == worker.pid
            assert info["gpus"] == [] and info["gpu_note"], info
        out = subprocess.run([sys.executable, "-m", "flshell.cli", "--server", address, "-c", "gpu"],
                             capture_output=True, text=True, timeout=60, cwd=REPO,
                             env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
        assert out.returncode == 0, out.stdout + out.stderr
        assert "site-1" in out.stdout and "site-2" in out.stdout and "no GPU" in out.stdout, out.stdout
    finally:
        simulator.abort("test")
        result = simulator.wait(60)
    assert result.status == "ABORTED"


def test_workers_die_with_a_killed_simulator(tmp_path, jobs):
    """SIGKILL the `flshell sim --processes` process mid-round: its workers (and the scripts in
    them) end too, through their control sockets, instead of running on as orphans."""
    job = _slow_job(tmp_path, jobs, min_clients=1, slow="all")
    ws = tmp_path / "ws"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flshell.cli", "sim", str(job), "-n", "4", "-t", "2", "--processes",
         "-q", "-w", str(ws)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_stalled(ws, "site-1", "site-2", "site-3", "site-4")
        workers = [p for p in procs_mentioning(WORKER) if str(ws) in " ".join(p.cmdline())]
        assert len(workers) == 2, workers
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(p.is_running() and p.status() != "zombie" for p in workers):
        assert time.monotonic() < deadline, "workers outlived their simulator"
        time.sleep(0.1)
