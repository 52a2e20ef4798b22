"""A federation of real processes on 127.0.0.1 for fault tests: one `flshell server` and
`flshell client` site agents, each job in a child process of its agent. The server can be
SIGKILLed and started again on the same ports and workspace; sites can be killed and
restarted; every process started here is ended by pid when the federation closes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from runtime.admin import Session

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello-numpy"
FINAL = ("COMPLETED", "FAILED", "ABORTED")


def slow_hello(tmp_path: Path, rounds: int, sleep: float) -> Path:
    """hello-numpy with `rounds` rounds whose sites take `sleep` seconds per round."""
    job = tmp_path / "slow-hello"
    shutil.copytree(HELLO, job)
    cfg_path = job / "app" / "config" / "config_server.json"
    cfg = json.loads(cfg_path.read_text())
    for wf in cfg["workflows"]:
        wf["args"]["num_rounds"] = rounds
    cfg_path.write_text(json.dumps(cfg))
    client = job / "app" / "custom" / "client.py"
    client.write_text(client.read_text().replace(
        "        model = flare.receive()\n",
        f"        model = flare.receive()\n        import time; time.sleep({sleep})\n"))
    return job


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate` until it returns something true; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


class ProcFederation:
    def __init__(self, root: Path, heartbeat: float = 0.5, lost_after: float | None = None,
                 server_args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.ws = root / "server"
        self.heartbeat = heartbeat
        self.lost_after = lost_after
        self.server_args = server_args
        self.server: subprocess.Popen | None = None
        self.state: dict[str, Any] = {}
        self.clients: dict[str, subprocess.Popen] = {}
        self.started: list[subprocess.Popen] = []

    # ---- server ------------------------------------------------------------------------------

    def start_server(self, same_ports: bool = False) -> dict[str, Any]:
        """Start `flshell server` (on the ports it had before with `same_ports`); returns its
        server.json once it is the new process's."""
        extra: list[str] = []
        if same_ports:
            extra = ["--fl-port", self.state["fl_address"].rsplit(":", 1)[1],
                     "--admin-port", self.state["admin_address"].rsplit(":", 1)[1]]
        if self.lost_after is not None:
            extra += ["--lost-after", str(self.lost_after)]
        (self.ws / "server.json").unlink(missing_ok=True)
        log = open(self.root / "server.out", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flshell.cli", "server", "--workspace", str(self.ws),
             "--insecure", "--heartbeat-interval", str(self.heartbeat), *self.server_args, *extra],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.started.append(proc)
        self.server = proc

        def ready() -> dict | None:
            if proc.poll() is not None:
                raise AssertionError(f"server exited ({proc.returncode}): {self.server_output()}")
            try:
                state = json.loads((self.ws / "server.json").read_text())
            except (OSError, ValueError):
                return None
            return state if state.get("pid") == proc.pid else None

        self.state = wait_until(ready, 60, "the server to write server.json")
        return self.state

    def kill_server(self) -> None:
        assert self.server is not None
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.wait(10)

    def server_output(self) -> str:
        try:
            return (self.root / "server.out").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def fl_address(self) -> str:
        return self.state["fl_address"]

    @property
    def admin_address(self) -> str:
        return self.state["admin_address"]

    def session(self, timeout: float = 30) -> Session:
        return Session(self.admin_address, timeout=timeout)

    def start_with_job(self, job: Path, sites: list[str]) -> str:
        """The server and `sites` started, `job` submitted once they are connected: its id."""
        self.start_server()
        for name in sites:
            self.start_client(name)
        self.wait_sites(len(sites))
        with self.session() as s:
            return s.submit_job(job)

    # ---- sites -------------------------------------------------------------------------------

    def start_client(self, name: str) -> subprocess.Popen:
        out = open(self.root / f"{name}.out", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flshell.cli", "client", "--workspace", str(self.root / name),
             "--name", name, "--server", self.fl_address, "--insecure",
             "--heartbeat-interval", str(self.heartbeat)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.started.append(proc)
        self.clients[name] = proc
        return proc

    def job_process(self, site: str, job_id: str) -> psutil.Process | None:
        """`site`'s live process for `job_id` (a child of its agent), if there is one."""
        agent = self.clients.get(site)
        if agent is None or agent.poll() is not None:
            return None
        try:
            for child in psutil.Process(agent.pid).children():
                cmd = child.cmdline()
                if "runtime.client.job_process" in cmd and job_id in cmd \
                        and child.status() != psutil.STATUS_ZOMBIE:
                    return child
        except psutil.Error:
            return None
        return None

    def wait_sites(self, n: int, timeout: float = 60) -> None:
        def connected() -> bool:
            with self.session() as s:
                return sum(1 for r in s.list_sites() if r["status"] == "CONNECTED") >= n

        wait_until(connected, timeout, f"{n} sites connected")

    def site_log(self, name: str) -> str:
        try:
            return (self.root / name / "log.txt").read_text(errors="replace")
        except OSError:
            return ""

    # ---- the end -----------------------------------------------------------------------------

    def close(self) -> list[str]:
        """End every process started here (SIGTERM, then SIGKILL), with their children;
        returns the command lines of any child that outlived its parent."""
        orphans: list[psutil.Process] = []
        for proc in self.started:
            try:
                orphans += psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                pass
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        left = []
        for p in orphans:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    left.append(" ".join(p.cmdline()))
                    p.kill()
            except psutil.Error:
                pass
        return left

    def __enter__(self) -> "ProcFederation":
        return self

    def __exit__(self, *exc: object) -> None:
        left = self.close()
        if exc[0] is None:
            assert not left, f"processes outlived the federation: {left}"
