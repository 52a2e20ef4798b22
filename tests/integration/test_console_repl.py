"""The interactive console end to end: run_repl reads keys from prompt-toolkit's pipe input
(DummyOutput for the screen) and drives a real server: a ServerEngine, JobManager and
AdminServer on 127.0.0.1:0 with two site agents over gRPC, as in test_admin_service.py."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import psutil
import pytest
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from flshell.console.repl import run_repl
from flshell.console.script import Runner
from runtime.admin import Session
from tests.integration.conftest import grpc_federation

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello-numpy"
SLOW = Path(__file__).resolve().parent / "jobs" / "slow_site"
WAIT = 60  # seconds; the runs take a few, this only catches hangs


def _edit(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _hello(tmp_path: Path, rounds: int) -> Path:
    dest = tmp_path / "jobs" / "hello-numpy"
    shutil.copytree(HELLO, dest, ignore=shutil.ignore_patterns("__pycache__"))
    _edit(dest / "app" / "config" / "config_server.json", lambda d: d.update(num_rounds=rounds))
    return dest


def _stalling(tmp_path: Path, name: str, seconds: float) -> Path:
    """A 3-round job whose site-1 stalls `seconds` in round 1 (tests/integration/jobs/slow_site)."""
    dest = tmp_path / "jobs" / name
    shutil.copytree(SLOW, dest, ignore=shutil.ignore_patterns("__pycache__"))
    _edit(dest / "meta.json", lambda d: d.update(name=name))
    # in its own process (with the job's folder as its working folder), so an abort ends it
    _edit(dest / "app" / "config" / "config_client.json", lambda d: d["executors"][0]["executor"]["args"].update(
        script_args=f"--slow-site site-1 --sleep {seconds}", launch_external_process=True))
    return dest


@pytest.fixture
def server(tmp_path):
    with grpc_federation(tmp_path) as fed:
        yield fed


class Console:
    """What one run_repl wrote: the runner's stdout and stderr, and the console's own lines."""

    def __init__(self) -> None:
        self.out, self.err, self.notices = io.StringIO(), io.StringIO(), io.StringIO()
        self.runners: list[Runner] = []

    def runner(self, session, **kwargs) -> Runner:
        r = Runner(session, out=self.out, err=self.err, **kwargs)
        self.runners.append(r)
        return r

    def run(self, session: Session, address: str, keys: str, history: Path,
            later: Callable[[PipeInput], None] | None = None, **kwargs) -> int:
        """Type `keys`, then (from `later`, on its own thread) more keys."""
        with create_pipe_input() as inp:
            inp.send_text(keys)
            if later is not None:
                later(inp)
            code = run_repl(session, address, "a test federation", runner_factory=self.runner,
                            history_file=history, input=inp, output=DummyOutput(), notices=self.notices,
                            **kwargs)
        left = [t.name for t in threading.enumerate() if t.name.startswith("flshell-console")]
        assert not left, f"the console's refresher threads outlived it: {left}"
        return code


def _when(condition, then, timeout: float = WAIT) -> threading.Thread:
    """On a helper thread: once `condition()` holds, call `then()` (a Ctrl-C, say)."""
    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                then()
                return
            time.sleep(0.05)
    t = threading.Thread(target=wait, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_submit_list_watch_cancel_and_abort_with_confirmation(server, tmp_path):
    quick = _stalling(tmp_path, "steady", 1.5)  # still running when `watch last` starts
    slow = _stalling(tmp_path, "stalled", 60)
    history = tmp_path / "state" / "history"
    keys = "".join([
        f"submit_job {quick}\r",
        "list_jobs\r",
        "watch last\r",        # to the end of the job
        f"submit_job {slow}\r",
        "watch last\r",        # stalls in round 1: Ctrl-C (below) cancels it, not the shell
        "abort_job last\r",
        "\r",                  # Enter: refused, the default
        "abort_job last\r",
        "y\r",                 # yes (a whole line)
        "wait_job last\r",     # exit 4: ABORTED
        "exit\r",
    ])
    console = Console()

    def watching_slow_job() -> bool:
        jobs = server.manager.list_jobs(name="stalled")
        return bool(jobs) and f"watching job {jobs[0]['short_id']}" in console.err.getvalue()

    ctrl_c = _when(watching_slow_job, lambda: os.kill(os.getpid(), signal.SIGINT))
    with Session(server.admin.address, user="alice", timeout=10) as session:
        code = console.run(session, server.admin.address, keys, history, refresh_interval=0.5)
    ctrl_c.join(1)
    assert not Path("stalled").exists()  # (the script ran in the job's folder, not here)
    deadline = time.monotonic() + 10
    while psutil.Process().children(recursive=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert psutil.Process().children(recursive=True) == []  # the aborted script's process ended
    out, err, notices = console.out.getvalue(), console.err.getvalue(), console.notices.getvalue()
    assert code == 0, err

    jobs = {j["name"]: j for j in server.manager.list_jobs()}
    quick_id, slow_id = jobs["steady"]["job_id"], jobs["stalled"]["job_id"]
    assert jobs["steady"]["status"] == "COMPLETED"
    assert jobs["stalled"]["status"] == "ABORTED" and "alice" in jobs["stalled"]["reason"]

    assert notices.startswith(f"flshell — connected to {server.admin.address} (a test federation). Type help.")
    assert quick_id in out and slow_id in out  # what submit_job printed
    assert re.search(rf"^{quick_id[:8]} +steady +(SUBMITTED|WAITING|RUNNING) ", out, re.M)  # list_jobs
    assert f"watching job {quick_id[:8]} (steady)" in err
    assert "round 3/3 completed" in out  # watch followed the rounds ...
    assert f"job {quick_id[:8]} (steady) COMPLETED" in out  # ... to the end
    assert "^C cancelling" in notices  # the second watch was cancelled, the shell went on
    assert err.count("abort_job: not confirmed; nothing was done") == 1
    assert "abort requested" in out
    # no notice repeats what `watch last` showed; the abort is told at most once (it may reach
    # the console while the prompt is up, before `wait_job last` is typed, or during it: then not)
    told = notices.splitlines()[1:]
    assert "^C cancelling (Ctrl-C again to interrupt)" in told
    assert not [line for line in told if quick_id[:8] in line]
    assert len([line for line in told if f"{slow_id[:8]} stalled ABORTED" in line]) <= 1
    assert len(told) <= 2
    # the history file kept the lines as typed (a repeated line once)
    lines = [line[1:] for line in history.read_text().splitlines() if line.startswith("+")]
    assert lines == [f"submit_job {quick}", "list_jobs", "watch last", f"submit_job {slow}", "watch last",
                     "abort_job last", "wait_job last", "exit"]


def test_ctrl_c_clears_the_line_and_an_unreachable_server_is_survived(tmp_path):
    """No server at all: the shell opens, says it is reconnecting, runs what needs no server,
    and Ctrl-C at the prompt drops the line being typed."""
    address = "127.0.0.1:1"  # nothing listens there
    console = Console()
    keys = "list_jobs --ma\x03" + "help abort_job\r" + "list_jobs\r" + "\x04"  # Ctrl-C, ..., Ctrl-D
    with Session(address, timeout=2) as session:
        code = console.run(session, address, keys, tmp_path / "history", refresh_interval=0.2)
    out, err = console.out.getvalue(), console.err.getvalue()
    assert code == 0
    assert "abort_job" in out and "ID" in out  # help's usage
    assert err.count("list_jobs") == 1 and "unreachable" in err  # only the list_jobs typed in full ran
    assert "--ma" not in (tmp_path / "history").read_text()


@pytest.mark.slow
def test_background_notice_while_at_the_prompt(server, tmp_path):
    """A job that ends while the user sits at the prompt is told above it, once."""
    quick = _hello(tmp_path, rounds=1)
    console = Console()

    told_or_timeout = threading.Event()

    def exit_once_told(inp: PipeInput) -> None:
        def leave() -> None:
            told_or_timeout.set()
            inp.send_text("exit\r")
        _when(lambda: "COMPLETED" in console.notices.getvalue() or told_or_timeout.is_set(), leave)

    timer = threading.Timer(WAIT, told_or_timeout.set)  # a hang fails the asserts below, not the run
    timer.start()
    with Session(server.admin.address, timeout=10) as session:
        code = console.run(session, server.admin.address, f"submit_job {quick}\r", tmp_path / "history",
                           later=exit_once_told, refresh_interval=0.5)
    timer.cancel()
    job_id = console.out.getvalue().strip()
    assert code == 0 and server.manager.get_job(job_id)["status"] == "COMPLETED"
    told = [line for line in console.notices.getvalue().splitlines() if "COMPLETED" in line]
    assert len(told) == 1 and re.fullmatch(rf"\[\d\d:\d\d:\d\d\] job {job_id[:8]} hello-numpy COMPLETED", told[0])


def test_a_quick_server_restart_is_told_as_lost_and_reconnected(server, tmp_path):
    """The admin port goes and is back at once (a `restart server`): the watch stream broke,
    events may have been missed; the console says so, and says when it is connected again."""
    from runtime.server.admin_service import AdminServer

    address = server.admin.address
    port = int(address.rsplit(":", 1)[1])
    console = Console()
    back: list[AdminServer] = []

    gave_up = threading.Event()

    def outage(inp: PipeInput) -> None:
        def restart() -> None:
            server.admin.stop(0)
            back.append(AdminServer(server.manager, "127.0.0.1", port).start())
        _when(lambda: "reconnected" in console.notices.getvalue() or gave_up.is_set(),
              lambda: inp.send_text("exit\r"))
        _when(lambda: "connected to" in console.notices.getvalue(), restart)

    timer = threading.Timer(WAIT, gave_up.set)  # a missing notice fails the asserts, not the run
    timer.start()

    try:
        with Session(address, timeout=5) as session:
            code = console.run(session, address, "", tmp_path / "history", later=outage, refresh_interval=30)
    finally:
        timer.cancel()
        for admin in back:
            admin.stop(0)
    told = [line.split("] ", 1)[1] for line in console.notices.getvalue().splitlines()[1:]]
    assert code == 0
    assert told[0].startswith(f"server {address} unreachable") and told[-1] == f"reconnected to {address}"
