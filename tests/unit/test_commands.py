"""The scripted-command runner (`flshell -c`): parsing, output and exit codes, against a real
server (engine, job store, job manager, admin port on 127.0.0.1) with no sites."""

from __future__ import annotations

import io
import shutil
import socket
from pathlib import Path

import pytest

from flshell.commands import FAILED, OK, UNREACHABLE, USAGE, UsageError, parse_script, run_script, split_script
from runtime.admin import Session
from runtime.server.admin_service import AdminServer
from runtime.server.engine import ServerEngine
from runtime.server.manager import JobManager

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    engine = ServerEngine(tmp_path_factory.mktemp("server"))
    manager = JobManager(engine, schedule_interval=0.1).start()
    admin = AdminServer(manager).start()
    try:
        with Session(admin.address, timeout=10) as s:
            yield s
    finally:
        admin.stop(0)
        manager.stop(abort_running=True)
        engine.close()


@pytest.fixture
def job(tmp_path) -> Path:
    folder = tmp_path / "hello-numpy"
    shutil.copytree(HELLO, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def run(session: Session, text: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_script(session, text, out, err)
    return code, out.getvalue(), err.getvalue()


def test_split_script_on_newlines_semicolons_and_comments():
    text = "submit_job 'my job';wait_job last --timeout 3  # then wait\n\n# a comment line\nsites ; ;sys_info;;"
    assert split_script(text) == [(1, ["submit_job", "my job"]), (1, ["wait_job", "last", "--timeout", "3"]),
                                  (4, ["sites"]), (4, ["sys_info"])]
    assert split_script("show_job 'a;b'") == [(1, ["show_job", "a;b"])]
    assert split_script("  # nothing\n") == []


@pytest.mark.parametrize("text, message", [
    ("lsit_jobs", "unknown command 'lsit_jobs'; did you mean list_jobs?"),
    ("frobnicate", "known: abort_job"),
    ("show_job", "required: ID"),
    ("show_job a b", "unrecognized arguments: b"),
    ("sites\nwait_job x --timeout soon", "line 2: wait_job: argument --timeout: invalid float value"),
    ("tail_log x -n", "expected one argument"),
    ("show_job 'x", "No closing quotation"),
])
def test_usage_errors_name_the_line(text, message):
    with pytest.raises(UsageError, match=message.replace("?", r"\?")):
        parse_script(text)


def test_a_usage_error_anywhere_runs_nothing(session, job):
    before = len(session.list_jobs())
    code, out, err = run(session, f"submit_job {job}\nlsit_jobs")
    assert code == USAGE and out == ""
    assert "line 2: unknown command 'lsit_jobs'; did you mean list_jobs?" in err
    assert len(session.list_jobs()) == before


def test_submit_show_list_abort_download_delete(session, job, tmp_path):
    code, out, err = run(session, f"submit_job {job}; show_job last; list_jobs --name hello-numpy; abort_job last")
    assert code == OK, err
    lines = out.splitlines()
    job_id = lines[0]
    assert len(job_id) == 36 and session.get_job(job_id)["status"] == "ABORTED"
    assert f"job        {job_id}" in lines and "name       hello-numpy" in lines
    assert any(line.startswith("ID ") and "STATUS" in line for line in lines)
    assert any(line.startswith(job_id[:8]) for line in lines[1:])
    assert lines[-1] == f"job {job_id[:8]} (hello-numpy): abort requested; status ABORTED"

    dest = tmp_path / "dl"
    code, out, err = run(session, f"download_job {job_id[:8]} {dest}; delete_job {job_id[:8]}")
    assert code == OK, err
    assert out.splitlines() == [str(dest / job_id), f"job {job_id[:8]} (hello-numpy) deleted"]
    assert (dest / job_id / "job" / "meta.json").is_file()


def test_the_first_failure_stops_the_script(session, job):
    before = len(session.list_jobs())
    code, out, err = run(session, f"show_job ffffffff; submit_job {job}")
    assert code == FAILED and out == ""
    assert "line 1: show_job: no job ffffffff" in err
    assert len(session.list_jobs()) == before


def test_refused_and_missing_things_fail(session, job):
    code, out, err = run(session, f"submit_job {job}\ndelete_job last")
    assert code == FAILED and "abort it first" in err
    job_id = out.splitlines()[0]
    code, out, err = run(session, f"abort_job {job_id}; tail_log {job_id}")
    assert code == FAILED and "has no log from the server" in err
    code, out, err = run(session, f"submit_job {job.parent / 'missing'}")
    assert code == FAILED and "does not exist" in err


def test_last_needs_a_job_submitted_by_the_script(session):
    code, out, err = run(session, "show_job last")
    assert code == USAGE and "'last' names the job most recently submitted" in err


def test_server_views(session):
    code, out, err = run(session, "sys_info; sites; help")
    assert code == OK, err
    assert "workspace" in out and "SITE" in out and "wait_job [--timeout S] ID" in out


def test_unreachable_server_is_exit_3():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Session(f"127.0.0.1:{port}", timeout=5) as session:
        code, out, err = run(session, "list_jobs; sites")
    assert code == UNREACHABLE and f"server unreachable at 127.0.0.1:{port}" in err
