"""Console commands and scripts against a real server: ServerEngine + JobManager + AdminServer on
127.0.0.1 with two site agents over gRPC (one federation for the module); and once through a
real POC, `flshell --poc DIR -f examples/admin/submit_wait_download.flsh`. Every exit code
(0 ok, 1 failed, 2 usage, 3 unreachable, 4 job unsuccessful) is produced and asserted."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flshell.console.script import Runner
from flshell.exit_codes import CONNECTION, INTERRUPTED, JOB_FAILED, JOB_UNSUCCESSFUL, OK, USAGE
from runtime import paths
from runtime.admin import Session
from tests.integration.conftest import (HELLO_NUMPY, JOBS, REPO, edit_json, grpc_federation,
                                       procs_mentioning, run_flshell)

EXAMPLE = REPO / "examples" / "admin" / "submit_wait_download.flsh"
EXAMPLE_DEST = paths.default("downloads")  # where the example file downloads to (tests/conftest.py sets FLSHELL_HOME)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with two connected sites, shared by the module's tests."""
    with grpc_federation(tmp_path_factory.mktemp("console"), max_jobs=4) as fed:
        yield fed


@pytest.fixture
def session(server):
    with Session(server.address, timeout=10) as s:
        yield s
        for job in s.list_jobs(include_done=False):  # nothing a test left waiting holds up the next
            s.abort_job(job["job_id"])


def _job(tmp_path: Path, src: Path = HELLO_NUMPY, rounds: int | None = 1, **meta) -> Path:
    folder = tmp_path / "jobs" / src.name
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("__pycache__"))
    if rounds is not None:
        edit_json(folder / "app" / "config" / "config_server.json", lambda c: c.update(num_rounds=rounds))
    if meta:
        edit_json(folder / "meta.json", lambda m: m.update(meta))
    return folder


def _runner(session, **kw) -> tuple[Runner, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Runner(session, out, err, **kw), out, err


def _rows(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def test_submit_wait_show_stats_log_download_with_last(session, tmp_path):
    r, out, err = _runner(session)
    job = _job(tmp_path, rounds=2)
    code = r.run_script(f"submit_job {job}\nwait_job last --timeout 60\nshow_job last\nshow_stats last\n"
                        f"tail_log last -n 3\ndownload_job last {tmp_path / 'dl'}\n"
                        f"list_jobs -s completed -n hello-numpy")
    assert code == OK, err.getvalue()
    job_id = r.last
    assert job_id is not None and len(job_id) == 36 and err.getvalue() == ""
    rows = _rows(out.getvalue())
    assert rows[0] == job_id and rows[1] == f"job {job_id[:8]} (hello-numpy) COMPLETED"
    assert f"job {job_id}" in rows and "status COMPLETED" in rows and "round 2/2" in rows
    assert "ROUND RECORDED SECONDS SITES OK FAILED MEAN_WEIGHT" in rows  # rounds record who answered
    assert any(row.startswith("2/2 ") and row.endswith(" site-1, site-2 - 6.5") for row in rows)
    assert any(row.startswith("mean_weight ") for row in rows)  # show_stats summary
    assert str(tmp_path / "dl" / job_id) in rows
    assert (tmp_path / "dl" / job_id / "result" / "global_model.npz").is_file()
    assert any(row.startswith(f"{job_id[:8]} hello-numpy COMPLETED 2/2") for row in rows)  # list_jobs


def test_json_format_one_document_per_command(session, tmp_path):
    r, out, err = _runner(session)
    code = r.run_line(f"set format json; submit_job {_job(tmp_path)}; wait_job last --timeout 60; show_job last; "
                      f"list_jobs -m 1; sites; sys_info; show_stats last")
    assert code == OK, err.getvalue()
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(docs) == 8
    fmt, submitted, final, shown, listed, sites, info, stats = docs
    assert fmt == {"format": "json"} and submitted == {"job_id": r.last}
    assert final["status"] == "COMPLETED" and shown["job_id"] == r.last and len(shown["rounds"]) == 1
    assert [j["job_id"] for j in listed] == [r.last]
    assert {s["name"] for s in sites} == {"site-1", "site-2"} and "workspace" in info
    assert stats["rounds"][0]["metrics"] == shown["rounds"][0]["metrics"]


def test_watch_a_job_to_its_end(session, tmp_path):
    r, out, err = _runner(session)
    assert r.run_line(f"submit_job {_job(tmp_path, rounds=2)}; watch last") == OK, err.getvalue()
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()[1:]]
    assert "round 1/2 started on 2 site(s)" in lines and "round 2/2 started on 2 site(s)" in lines
    assert any(line.startswith("site-1 reported train in ") for line in lines)
    assert any(line.startswith("round 2/2 completed in ") for line in lines)
    assert lines[-1] == f"job {r.last[:8]} (hello-numpy) COMPLETED"
    assert not any("heartbeat" in line for line in lines)


def test_exit_4_when_the_job_fails_or_is_aborted(session, tmp_path):
    failing = _job(tmp_path, JOBS / "raise_in_round2", rounds=None)
    edit_json(failing / "app" / "config" / "config_server.json",
              lambda c: c["workflows"][0]["args"].update(min_clients=2))
    r, out, err = _runner(session)
    assert r.run_script(f"submit_job {failing}\nwait_job last --timeout 60\nshow_job last") == JOB_UNSUCCESSFUL
    assert f"job {r.last[:8]} (raise_in_round2) FAILED" in out.getvalue()
    assert "boom on purpose" in session.get_job(r.last)["reason"] + json.dumps(session.get_job(r.last))

    waiting = _job(tmp_path / "w", min_clients=3)  # two sites: it waits, then is aborted
    r, out, err = _runner(session)
    assert r.run_script(f"submit_job {waiting}; abort_job -y last; wait_job last") == JOB_UNSUCCESSFUL
    assert out.getvalue().splitlines()[-1] == f"job {r.last[:8]} (hello-numpy) ABORTED: aborted by admin"


def test_exit_1_a_command_failed_and_keep_going(session, tmp_path):
    r, out, err = _runner(session)
    assert r.run_script("show_job ffffffff\nsites") == JOB_FAILED
    assert err.getvalue() == "error: line 1: show_job: no job matches ffffffff; list_jobs shows the ids\n"
    assert out.getvalue() == ""
    r, out, err = _runner(session)
    assert r.run_script(f"submit_job {tmp_path / 'missing'}\nshow_job ab\nsites", keep_going=True) == JOB_FAILED
    assert "line 1: submit_job:" in err.getvalue() and "does not exist" in err.getvalue()
    assert "line 2: show_job: job id prefix 'ab' is too short" in err.getvalue()
    assert "site-1" in out.getvalue()  # the rest ran
    r, out, err = _runner(session)
    # a server without a process of its own to stop (this in-test one) says so
    assert r.run_line("shutdown -y server") == JOB_FAILED and "cannot shutdown itself" in err.getvalue()


def test_exit_2_usage_errors_run_nothing(session, tmp_path):
    before = len(session.list_jobs())
    r, out, err = _runner(session)
    assert r.run_script(f"submit_job {_job(tmp_path)}\nlsit_jobs") == USAGE
    assert err.getvalue() == ("error: line 2: unknown command 'lsit_jobs'; did you mean list_jobs? "
                              "(nothing ran)\n")
    assert len(session.list_jobs()) == before
    waiting = _job(tmp_path / "w", min_clients=3)
    r, out, err = _runner(session)
    assert r.run_script(f"submit_job {waiting}\nabort_job last") == USAGE  # no -y, no terminal
    assert "add -y" in err.getvalue() and session.get_job(r.last)["status"] == "WAITING"


def test_exit_3_server_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Session(f"127.0.0.1:{port}", timeout=5) as closed:
        r, out, err = _runner(closed)
        assert r.run_script("help\nlist_jobs\nsites") == CONNECTION
    assert f"error: line 2: list_jobs: server unreachable at 127.0.0.1:{port}" in err.getvalue()
    assert "COMMAND" in out.getvalue() and "HEARTBEAT" not in out.getvalue()  # help ran; sites did not


def test_source_files_share_the_runner(session, tmp_path):
    inner = tmp_path / "inner.flsh"
    inner.write_text("# wait for what the outer file submitted\nwait_job last --timeout 60\n")
    outer = tmp_path / "outer.flsh"
    outer.write_text(f"set format json\nsubmit_job {_job(tmp_path)}\nsource {inner}\nsites\n")
    r, out, err = _runner(session)
    assert r.run_line(f"source {outer}") == OK, err.getvalue()
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert docs[1] == {"job_id": r.last} and docs[2]["status"] == "COMPLETED" and len(docs[3]) == 2
    assert r.fmt == "json"  # a sourced `set` holds for the runner


def test_sites_gpu_and_status_views(session):
    r, out, err = _runner(session)
    assert r.run_line("sites; check_status server; check_status client site-2; gpu; sys_info site-1") == OK, \
        err.getvalue()
    rows = _rows(out.getvalue())
    assert any(row.startswith("site-1 CONNECTED") for row in rows)
    assert any(row.startswith("site-2 CONNECTED") for row in rows)
    assert any(row.startswith("sites 2 CONNECTED") for row in rows)
    if not any(s["info"].get("gpus") for s in session.list_sites()):
        assert "site-1 - no GPU" in rows
    assert "name site-1" in rows
    r, out, err = _runner(session)
    assert r.run_line("check_status client site-9") == JOB_FAILED and "no site site-9" in err.getvalue()


def test_cancel_stops_wait_job_and_tail_log_follow(session, tmp_path):
    waiting = _job(tmp_path, min_clients=3)
    r, out, err = _runner(session)
    assert r.run_line(f"submit_job {waiting}") == OK
    log = Path(session.get_job(r.last)["workspace"]) / "logs" / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("one\n")
    for line, code in (("wait_job last", INTERRUPTED), ("tail_log last -f", OK), ("watch", OK)):
        codes: list[int] = []
        t = threading.Thread(target=lambda: codes.append(r.run_line(line)))
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), (line, codes, err.getvalue())
        r.cancel()
        t.join(5)
        assert not t.is_alive() and codes == [code], (line, codes, err.getvalue())
    assert "wait_job: stopped waiting; job" in err.getvalue() and "is still WAITING" in err.getvalue()
    assert out.getvalue().splitlines()[-1] == "one"  # tail_log -f printed the log before it was cancelled


def test_the_example_file_on_a_real_poc(tmp_path):
    poc = tmp_path / "poc"
    assert run_flshell("poc", "prepare", "-n", "2", "-w", poc).returncode == 0
    r = run_flshell("poc", "start", "-w", poc)
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = None
    try:
        r = run_flshell("--poc", poc, "-f", EXAMPLE.relative_to(REPO))  # run from the repository root
        assert r.returncode == OK, r.stdout + r.stderr
        job_id = r.stdout.splitlines()[0]
        assert len(job_id) == 36, r.stdout
        rows = _rows(r.stdout)
        assert f"job {job_id[:8]} (hello-numpy) COMPLETED" in rows
        assert str(EXAMPLE_DEST / job_id) in rows and f"job {job_id}" in rows and "round 5/5" in rows
        with np.load(EXAMPLE_DEST / job_id / "result" / "global_model.npz", allow_pickle=False) as d:
            np.testing.assert_allclose(d["weights"], np.arange(1, 10).reshape(3, 3) + 5 * (1 + 2) / 2)

        r = run_flshell("--poc", poc, "-c", "list_jobs; wait_job ffffffff")  # and exit 1 through the CLI
        assert r.returncode == JOB_FAILED and "no job matches ffffffff" in r.stderr
    finally:
        stopped = run_flshell("poc", "stop", "-w", poc)
        if job_id:
            shutil.rmtree(EXAMPLE_DEST / job_id, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr
    left = procs_mentioning(str(poc))
    assert not left, [p.info["cmdline"] for p in left]


def test_version_from_the_package_metadata():
    from importlib.metadata import version

    r = run_flshell("--version")
    assert r.returncode == 0 and r.stdout == f"flshell {version('flshell')}\n"
