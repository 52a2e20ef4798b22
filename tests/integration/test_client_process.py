"""`flshell client` as real processes on 127.0.0.1: each site agent runs every job in a child
process of its own. A job completes with the exact model and the sites' logs reach the server;
a child that dies fails its task while its agent stays up for the next job; a SIGKILLed agent
leaves no child behind, goes LOST, and comes back under its one name; an abort ends the site's
child within about a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from runtime.server.engine import ServerEngine
from runtime.server.job_runner import JobRunner
from runtime.server.manager import JobManager
from runtime.server.sites import SiteStatus
from runtime.transport.grpc_server import FLServer
from tests.integration.conftest import HELLO_NUMPY, JOBS, REPO, copy_job, edit_json

HELLO_START = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
SLOW_START = np.array([[1.0, 2.0], [3.0, 4.0]])


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> float:
    """Seconds it took `predicate` to hold; fails the test after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


def gone(pid: int) -> bool:
    """No such process (a zombie not yet reaped by whoever inherited it counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Federation:
    """A server (engine with a heartbeat monitor, gRPC site port) and `flshell client` processes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.engine = ServerEngine(tmp / "server", monitor=True, heartbeat_interval=0.2,
                                   stale_after=0.6, lost_after=1.5)
        self.server = FLServer(self.engine, "127.0.0.1", 0).start()
        self.manager = JobManager(self.engine, max_jobs=4, ready_timeout=60,
                                  schedule_interval=0.05).start()
        self.clients: dict[str, subprocess.Popen] = {}
        self.output: dict[int, list[str]] = {}
        self.shipped: dict[tuple[str, str], list[str]] = {}  # (job, site) -> texts
        self.heartbeats = self.engine.events.subscribe(types={"heartbeat"})
        # Everything sites ship arrives here, whichever log sinks come and go around it.
        received = self.engine.ship_log

        def ship_log(site: str, job_id: str, text: str) -> None:
            self.shipped.setdefault((job_id, site), []).append(text)
            received(site, job_id, text)

        self.engine.ship_log = ship_log

    def start_client(self, name: str) -> subprocess.Popen:
        """`flshell client` for site `name`; returns once it printed that it registered."""
        cmd = [sys.executable, "-m", "flshell.client_cmd", "--workspace", str(self.tmp / name),
               "--name", name, "--server", self.server.address, "--insecure",
               "--heartbeat-interval", "0.2"]
        with open(self.tmp / f"{name}.stderr", "ab") as err:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
        lines = self.output[proc.pid] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        self.clients[name] = proc
        wait_for(lambda: any("registered" in ln for ln in lines) or proc.poll() is not None,
                 60, f"{name} to register")
        assert proc.poll() is None, (self.tmp / f"{name}.stderr").read_text()
        assert lines[0].startswith(f"{name} registered with {self.server.address}")
        return proc

    def run_job(self, folder: Path, sites: list[str], **overrides) -> JobRunner:
        """Submit the job to the server's job manager; its runner once the scheduler starts it
        on `sites` (the connected ones)."""
        job_id = self.manager.submit_folder(folder, "test", overrides=overrides or None)
        runner = self.manager.runner_for(job_id, timeout=60)
        assert runner is not None, self.manager.get_job(job_id)
        assert sorted(runner.targets) == sorted(sites)
        return runner

    def shipped_text(self, job_id: str, site: str) -> str:
        return "".join(self.shipped.get((job_id, site), []))

    def child_pid(self, site: str, job_id: str) -> int:
        """The pid of `site`'s process for `job_id`, as its heartbeats report it."""
        def pid():
            rec = self.engine.sites.get(site)
            return (rec.info.get("job_pids") or {}).get(job_id) if rec else None

        wait_for(lambda: pid() is not None, 30, f"{site}'s heartbeat to carry its job pid")
        return pid()

    def stop_client(self, name: str) -> int:
        proc = self.clients.pop(name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(30)

    def close(self) -> None:
        for proc in self.clients.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.clients.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.heartbeats.close()
        self.manager.stop(abort_running=True, timeout=10)
        self.server.stop(0)
        self.engine.close()


def leftovers(tmp: Path) -> list[str]:
    """Live processes started for this test (their command lines name its folder)."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(str(tmp) in c for c in cmd):
            out.append(f"{p.info['pid']}: {' '.join(cmd)}")
    return out


@pytest.fixture
def fed(tmp_path):
    f = Federation(tmp_path)
    try:
        yield f
    finally:
        f.close()
        left: list[str] = []
        for _ in range(100):  # children die with their agents; give the kernel a moment
            left = leftovers(tmp_path)
            if not left:
                break
            time.sleep(0.05)
        for line in left:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        assert not left, "processes left behind:\n" + "\n".join(left)


def global_model(runner: JobRunner) -> np.ndarray:
    with np.load(runner.workspace.result_dir / "global_model.npz", allow_pickle=False) as d:
        return d["weights"]


def test_hello_numpy_on_two_client_processes_with_logs_shipped(fed, tmp_path):
    sites = ["site-1", "site-2"]
    agents = [fed.start_client(s) for s in sites]
    runner = fed.run_job(HELLO_NUMPY, sites, num_rounds=2)
    pids = {s: fed.child_pid(s, runner.job_id) for s in sites}
    assert runner.wait(120) == "COMPLETED", runner.reason
    np.testing.assert_allclose(global_model(runner), HELLO_START + 2 * (1 + 2) / 2, atol=1e-12)

    for site, agent in zip(sites, agents):
        assert pids[site] != agent.pid  # the job ran in a child process, not in the agent
        wait_for(lambda: gone(pids[site]), 15, f"{site}'s job process to exit")
        # the server got the site's log: the job logger's lines and the script's prints
        text = fed.shipped_text(runner.job_id, site)
        assert f"ready on {site}" in text
        assert f"{site}: adding {float(site[-1])} each round" in text
        assert f"{site}: round 2/2" in text
        # ... and the same lines are in the job's log on the site
        job_dir = tmp_path / site / "jobs" / runner.job_id
        wait_for(lambda: "exiting (0)" in (job_dir / "log.txt").read_text(), 10, "the final log")
        assert f"{site}: round 2/2" in (job_dir / "log.txt").read_text()
        wait_for(lambda: not (job_dir / "process.json").exists(), 10,
                 "the agent to clear the job's process marker after a clean end")

    for site in sites:
        assert fed.stop_client(site) == 0
        log = (tmp_path / site / "log.txt").read_text()
        assert f"{site} registered" in log and f"{site} stopped" in log
        assert fed.engine.sites.get(site).status == SiteStatus.DISCONNECTED


def test_a_dying_job_process_fails_the_task_and_the_agent_runs_the_next_job(fed):
    sites = ["site-1", "site-2"]
    agents = [fed.start_client(s) for s in sites]
    crashed = fed.run_job(JOBS / "os_exit_in_round1", sites)
    assert crashed.wait(60) == "FAILED", crashed.reason
    assert crashed.failed_sites == ["site-1"]
    detail = crashed.failure_details["site-1"]
    assert "job process of site-1 exited with code 3" in detail, detail

    # the same agent processes, still registered, run the next job to the end
    runner = fed.run_job(HELLO_NUMPY, sites, num_rounds=1)
    assert runner.wait(120) == "COMPLETED", runner.reason
    np.testing.assert_allclose(global_model(runner), HELLO_START + (1 + 2) / 2, atol=1e-12)
    assert all(a.poll() is None for a in agents)
    assert sorted(fed.engine.sites.names(None)) == sites
    assert all(fed.engine.sites.get(s).status == SiteStatus.CONNECTED for s in sites)


def test_a_killed_agent_leaves_no_child_goes_lost_and_comes_back_under_its_name(fed, tmp_path):
    sites = ["site-1", "site-2", "site-3"]
    fed.start_client("site-1")
    fed.start_client("site-2")
    agent3 = fed.start_client("site-3")
    runner = fed.run_job(JOBS / "slow_site", sites)  # site-3 stalls in round 1; min_clients 2
    child3 = fed.child_pid("site-3", runner.job_id)
    job_dir = tmp_path / "site-3" / "jobs" / runner.job_id
    wait_for(lambda: (job_dir / "stalled").exists(), 60, "site-3 to stall in round 1")

    agent3.send_signal(signal.SIGKILL)
    took = wait_for(lambda: gone(child3), 5, "site-3's orphaned job process to go")
    agent3.wait(10)
    fed.clients.pop("site-3")
    assert "site agent of site-3 is gone" in (job_dir / "log.txt").read_text()
    print(f"\nSIGKILLed agent -> its job process gone: {took:.3f}s")
    wait_for(lambda: fed.engine.sites.get("site-3").status == SiteStatus.LOST, 15,
             "the server to mark site-3 LOST")

    # round 1 goes on without site-3 (min_clients 2); the restarted site-3 registers under its
    # name again, and fails the old job's later tasks at once instead of leaving them hanging
    fed.start_client("site-3")
    assert sorted(fed.engine.sites.names(None)) == sites  # one entry per name, no duplicate
    assert fed.engine.sites.get("site-3").status == SiteStatus.CONNECTED
    assert runner.wait(60) == "COMPLETED", runner.reason
    np.testing.assert_allclose(global_model(runner), SLOW_START + 3 * (1 + 2) / 2, atol=1e-12)
    rounds = [json.loads(p.read_text()) for p in sorted(runner.workspace.rounds_dir.glob("*.json"))]
    assert [r["sites_ok"] for r in rounds] == [["site-1", "site-2"]] * 3
    assert all(r["sites_failed"] == ["site-3"] for r in rounds), rounds
    assert gone(child3)


def test_stopping_a_client_ends_its_job_process_then_says_goodbye(fed, tmp_path):
    sites = ["site-1", "site-2"]
    fed.start_client("site-1")
    fed.start_client("site-2")
    job = copy_job(JOBS / "slow_site", tmp_path)
    edit_json(job / "app" / "config" / "config_client.json",
              lambda c: c["executors"][0]["executor"]["args"].update(script_args="--slow-site site-2"))
    runner = fed.run_job(job, sites)
    child = fed.child_pid("site-2", runner.job_id)
    wait_for((tmp_path / "site-2" / "jobs" / runner.job_id / "stalled").exists, 60, "site-2 to stall")

    assert fed.stop_client("site-2") == 0  # SIGTERM: a clean stop
    assert gone(child)
    assert fed.engine.sites.get("site-2").status == SiteStatus.DISCONNECTED
    assert runner.wait(30) == "FAILED"  # min_clients 2, and site-2 left mid-round
    assert "site-2 disconnected" in runner.failure_details["site-2"]


def test_abort_ends_the_sites_job_processes_within_a_second(fed, tmp_path):
    sites = ["site-1", "site-2"]
    agents = [fed.start_client(s) for s in sites]
    job = copy_job(JOBS / "slow_site", tmp_path)
    edit_json(job / "app" / "config" / "config_client.json",
              lambda c: c["executors"][0]["executor"]["args"].update(script_args="--slow-site all --sleep 60"))
    runner = fed.run_job(job, sites)
    pids = [fed.child_pid(s, runner.job_id) for s in sites]
    for s in sites:
        stalled = tmp_path / s / "jobs" / runner.job_id / "stalled"
        wait_for(stalled.exists, 60, f"{s} to stall in round 1")

    start = time.monotonic()
    runner.abort("test")
    took = wait_for(lambda: all(gone(p) for p in pids), 10, "the job processes to exit")
    print(f"\nabort -> site job processes gone: {took:.3f}s")
    assert took < 2.0
    assert runner.wait(10) == "ABORTED"
    assert time.monotonic() - start < 10
    assert all(a.poll() is None for a in agents)  # the agents stay up for the next job


@pytest.mark.parametrize("args, message", [
    (["--server", "127.0.0.1:8002"], "pass --startup KIT"),
    (["--server", "localhost", "--insecure"], "--server: expected HOST:PORT"),
    (["--server", "127.0.0.1:70000", "--insecure"], "--server: port must be 1..65535"),
    (["--server", "h:1", "--insecure", "--heartbeat-interval", "0"], "--heartbeat-interval"),
])
def test_client_command_says_what_is_wrong_with_its_arguments(tmp_path, capsys, args, message):
    from flshell import client_cmd, exit_codes

    code = client_cmd.main(["--workspace", str(tmp_path / "ws"), "--name", "site-1", *args])
    err = capsys.readouterr().err
    assert code == exit_codes.USAGE and err.startswith("error: ") and message in err, err


def test_client_command_rejects_a_bad_name_and_a_file_as_workspace(tmp_path, capsys):
    import argparse

    from flshell import client_cmd, exit_codes

    parser = argparse.ArgumentParser(prog="flshell")
    client_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["client", "-w", str(tmp_path), "-n", "server", "-s", "h:1", "--insecure"])
    assert args.command == "client"
    assert client_cmd.run(args) == exit_codes.USAGE
    assert "--name" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    args.name, args.workspace = "site-1", str(tmp_path / "file")
    assert client_cmd.run(args) == exit_codes.USAGE
    assert "is a file, expected a folder" in capsys.readouterr().err


def test_exit_descriptions_name_the_code_or_the_signal():
    from runtime.client.process_agent import describe_exit

    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL (out of memory?)"
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV"
