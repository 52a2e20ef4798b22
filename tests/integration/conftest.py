"""Shared helpers for the `flshell sim` integration tests.

Every run is a real `python -m flshell.cli sim ...` subprocess (the same engine, job runner,
in-process transport and executors a user gets), with its workspace under tmp_path and a
timeout, so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
HELLO_NUMPY = REPO / "examples" / "hello-numpy"
JOBS = Path(__file__).resolve().parent / "jobs"

# hello-numpy's persistor starts from these weights (app/config/config_server.json).
HELLO_INITIAL = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]

SIM_TIMEOUT = 120  # seconds; every run here takes about one, so this only catches hangs


def _cli_env() -> dict[str, str]:
    """The environment of a plain shell with output piped: no inherited terminal width or
    forced colour, so what the CLI prints does not depend on who runs the tests."""
    env = dict(os.environ)
    for var in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(var, None)
    env["NO_COLOR"] = "1"
    return env


def run_flshell(*args: Any, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python -m flshell.cli ARGS...`; returns the finished process (text output)."""
    cmd = [sys.executable, "-m", "flshell.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=_cli_env(), capture_output=True, text=True,
                          timeout=SIM_TIMEOUT)


def sim(*args: Any) -> subprocess.CompletedProcess:
    """Run `flshell sim ARGS...`. Callers always pass `-w` with a folder under tmp_path."""
    assert "-w" in args, "integration runs must use a workspace under tmp_path"
    return run_flshell("sim", *args)


def flat(text: str) -> str:
    """Text with every run of whitespace made one space: rich wraps long lines at the pipe's
    80 columns, and the tests care about the words, not where a line broke."""
    return " ".join(text.split())


def job_dirs(workspace: Path) -> list[Path]:
    """The job folders the server wrote under WS/server/jobs/."""
    root = workspace / "server" / "jobs"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def only_job(workspace: Path) -> Path:
    """The single job folder under WS/server/jobs/ (asserts there is exactly one)."""
    dirs = job_dirs(workspace)
    assert len(dirs) == 1, f"expected one job under {workspace}/server/jobs, found {dirs}"
    return dirs[0]


def copy_job(src: Path, dest_parent: Path, name: str | None = None) -> Path:
    """A private copy of a job folder, safe to edit."""
    dest = dest_parent / (name or src.name)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    """Load a JSON file, let `change` edit it in place (or return a replacement), write it back."""
    data = json.loads(path.read_text())
    new = change(data)
    path.write_text(json.dumps(data if new is None else new, indent=2) + "\n")


def describe(proc: subprocess.CompletedProcess) -> str:
    """For assertion messages: what the command printed."""
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


@pytest.fixture
def hello_numpy() -> Path:
    return HELLO_NUMPY


@pytest.fixture
def jobs() -> Path:
    """tests/integration/jobs: the job fixtures written for these tests."""
    return JOBS


def procs_mentioning(text: str) -> list:
    """Live processes whose command line mentions `text` (e.g. a POC folder): what a test
    must leave none of."""
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in (p.info["cmdline"] or [])) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


from contextlib import contextmanager  # noqa: E402


@contextmanager
def grpc_federation(root: Path, sites: tuple[str, ...] = ("site-1", "site-2"),
                    admin_kwargs: dict | None = None, **manager_kwargs: Any):
    """A real server in this process (engine, job manager, FL port and admin port on 127.0.0.1,
    free ports) with `sites` connected as site agents over gRPC; yields a namespace with
    engine, manager, admin, fl and address (the admin port's)."""
    from types import SimpleNamespace

    from runtime.client.agent import SiteAgent
    from runtime.client.apps import DownloadedApps
    from runtime.client.sitelog import LogSink
    from runtime.server.admin_service import AdminServer
    from runtime.server.engine import ServerEngine
    from runtime.server.manager import JobManager
    from runtime.transport.grpc_client import GrpcSiteTransport
    from runtime.transport.grpc_server import FLServer

    engine = ServerEngine(root / "server")
    fl = FLServer(engine).start()
    manager = JobManager(engine, **{"ready_timeout": 30, "schedule_interval": 0.1,
                                    **manager_kwargs}).start()
    admin = AdminServer(manager, **(admin_kwargs or {})).start()
    sink = LogSink(interval=0.2)
    agents, transports = [], []
    try:
        for name in sites:
            t = GrpcSiteTransport(fl.address)
            transports.append(t)
            agent = SiteAgent(name, t, DownloadedApps(t, name, root / name), root / name, sink,
                              poll_timeout=0.5)
            agent.register()
            agent.start()
            agents.append(agent)
        yield SimpleNamespace(engine=engine, manager=manager, admin=admin, fl=fl,
                              address=admin.address, agents=agents)
    finally:
        for agent in agents:
            agent.stop(timeout=5)
        for t in transports:
            t.close()
        sink.close()
        admin.stop(0)
        manager.stop(abort_running=True, timeout=10)
        fl.stop(0)
        engine.close()
