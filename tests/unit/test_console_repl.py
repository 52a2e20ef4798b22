"""The interactive console's own behaviour against a fake Session (no server): run_repl reads
keys from prompt-toolkit's pipe input (DummyOutput for the screen). Confirmations read a whole
line, leaving an embedded federation asks about its unfinished jobs, and a broken watch stream
is told as a lost connection and its return as a reconnect."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from flshell.console.cache import CacheRefresher, ConsoleCache, Notice
from flshell.console.repl import run_repl
from flshell.console.script import Runner
from runtime.admin import ServerUnreachable
from tests.unit.test_console_commands import JOB_ID, FakeSession, FakeStream

ADDRESS = "127.0.0.1:8003"


class Session(FakeSession):
    """FakeSession with what the REPL's refresher and leaving need: an address, aborts that end
    the job, and wait_for_job."""

    address = ADDRESS

    def abort_job(self, ref):
        job = super().abort_job(ref)
        self.jobs[job["job_id"]] = {**job, "reason": "aborted by admin"}
        return self.jobs[job["job_id"]]

    def list_jobs(self, name=None, status=None, limit=None, include_done=True):
        jobs = super().list_jobs(name, status, limit, include_done)
        return jobs if include_done else [j for j in jobs if j["status"] not in ("COMPLETED", "FAILED", "ABORTED")]

    def wait_for_job(self, ref, timeout=None, poll=5.0):
        self.calls.append(("wait_for_job", ref))
        return self._find(ref)


def _console(session: Any, keys: str, **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with create_pipe_input() as inp:
        inp.send_text(keys)
        code = run_repl(session, ADDRESS, runner_factory=lambda s, **kw: Runner(s, out=out, err=err, **kw),
                        history_file=None, input=inp, output=DummyOutput(), notices=io.StringIO(),
                        refresh_interval=0.2, **kwargs)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _history(tmp_path, monkeypatch):
    monkeypatch.setenv("FLSHELL_HISTORY", str(tmp_path / "history"))


def _aborts(session: Session) -> list[Any]:
    return [c for c in session.calls if c[0] == "abort_job"]


def test_a_confirmation_reads_a_whole_line_so_yes_is_one_answer():
    session = Session()
    code, out, err = _console(session, "abort_job 3f2a\ryes\rexit\r")
    assert code == 0
    assert _aborts(session) == [("abort_job", "3f2a")] and "abort requested" in out
    assert "unknown command" not in err  # no `es` ran after a one-key `y`


@pytest.mark.parametrize("answer", ["\r", "n\r", "nope\r", "yess\r", "\x03"])  # Enter, n, other words, Ctrl-C
def test_anything_but_y_or_yes_is_no(answer):
    session = Session()
    code, out, err = _console(session, f"abort_job 3f2a\r{answer}exit\r")
    assert _aborts(session) == [] and "abort_job: not confirmed; nothing was done" in err
    assert "unknown command" not in err


def test_leaving_an_embedded_federation_with_a_running_job_asks_and_can_stay_or_abort(tmp_path):
    session = Session()
    # exit: asked, cancel (stays); Ctrl-D: asked again, abort
    code, out, err = _console(session, "exit\rc\r\x04a\r", embedded=tmp_path)
    assert code == 0
    assert err.count("not leaving: the console stays open") == 1
    assert _aborts(session) == [("abort_job", JOB_ID)]  # the running one, by this admin
    assert ("wait_for_job", JOB_ID) in session.calls  # ended before the federation stops
    assert "job 3f2a1b2c (hello-numpy) ABORTED: aborted by admin" in err


def test_leaving_them_says_they_go_on_the_next_time(tmp_path):
    session = Session()
    code, out, err = _console(session, "exit\rl\r", embedded=tmp_path / "local")
    assert code == 0 and _aborts(session) == []
    assert ("1 job has not finished (3f2a1b2c hello-numpy RUNNING); it stays in the store and goes on"
            in err) and str(tmp_path / "local") in err


def test_ctrl_d_twice_leaves_them(tmp_path):
    session = Session()
    code, out, err = _console(session, "\x04\x04", embedded=tmp_path)  # Ctrl-D at the prompt, at the question
    assert code == 0 and _aborts(session) == [] and "goes on the next time" in err


def test_nothing_is_asked_when_no_job_is_unfinished_or_the_federation_is_not_ours(tmp_path):
    session = Session()
    del session.jobs[JOB_ID]
    code, out, err = _console(session, "exit\r", embedded=tmp_path)
    assert code == 0 and err == ""
    code, out, err = _console(Session(), "exit\r")  # a remote server: its jobs are not ours to end
    assert code == 0 and err == ""


class BrokenStream(FakeStream):
    """A watch whose connection drops at once."""

    def __next__(self):
        raise ServerUnreachable(f"server unreachable at {ADDRESS}: Socket closed")


def test_a_watch_stream_that_breaks_is_told_as_lost_and_reconnected():
    """A server restarted between two listings is seen only by the watch stream breaking."""
    session = Session()
    streams = iter([BrokenStream([])])
    session.watch = lambda since=None, types=None: next(streams, None) or FakeStream([])
    notices: list[Notice] = []
    refresher = CacheRefresher(session, ConsoleCache(), interval=30, on_notice=notices.append, max_backoff=0.1)
    with refresher:
        deadline = time.monotonic() + 10
        while len(notices) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [(n.kind, n.status) for n in notices] == [("connection", "reconnecting"), ("connection", "connected")]
    assert not [t for t in threading.enumerate() if t.name.startswith("flshell-console")]
