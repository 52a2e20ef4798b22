"""The server's job store: SQLite index + job folders, lifecycle rules, restarts and crashes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.jobs import JobError, load_job
from runtime.server import job_store
from runtime.server.job_state import JobStatus
from runtime.server.job_store import (SCHEMA_VERSION, AmbiguousJob, JobRecord, JobStore, JobStoreError,
                                      UnknownJob)

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello-numpy"
S = JobStatus


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "ws")
    yield s
    s.close()


def variant(tmp_path: Path, name: str) -> Path:
    """A copy of hello-numpy whose meta.json names the job `name`."""
    dest = tmp_path / "src" / name
    shutil.copytree(HELLO, dest)
    meta = json.loads((dest / "meta.json").read_text())
    meta["name"] = name
    (dest / "meta.json").write_text(json.dumps(meta))
    return dest


def raw(store: JobStore) -> sqlite3.Connection:
    return sqlite3.connect(str(store.db_path))


def job_dirs(store: JobStore) -> list[str]:
    return sorted(p.name for p in store.jobs_dir.iterdir())


def run_to(store: JobStore, job_id: str, final: str | None = None) -> None:
    store.set_status(job_id, S.WAITING, "waiting for 2 sites")
    store.set_status(job_id, S.RUNNING)
    if final:
        store.set_status(job_id, final)


# ---- submit / get / list -----------------------------------------------------------------------


def test_submit_get_and_stored_folder(store):
    before = time.time()
    job_id = store.submit(HELLO, submitter="admin@org", meta_extra={"study": "s1", "overrides": {"x": 1}})
    rec = store.get(job_id)
    assert isinstance(rec, JobRecord)
    assert len(job_id) == 36 and job_id.count("-") == 4 and job_id[14] == "4"  # uuid4
    assert (rec.job_id, rec.name, rec.status, rec.reason, rec.submitter) == (
        job_id, "hello-numpy", S.SUBMITTED, None, "admin@org")
    assert before <= rec.submitted_at <= time.time()
    assert rec.started_at is None and rec.ended_at is None and rec.current_round is None
    assert rec.total_rounds == 5  # num_rounds from config_server.json
    assert rec.sites == ["@ALL"] and rec.min_clients == 2
    assert rec.workspace == store.root / "jobs" / job_id and rec.folder == rec.workspace / "job"
    assert rec.extra == {"study": "s1", "overrides": {"x": 1}}
    assert not rec.done and rec.short_id == job_id[:8] and rec.label() == f"{job_id[:8]} (hello-numpy)"
    assert json.loads(json.dumps(rec.to_dict()))["folder"] == str(rec.folder)
    # the stored folder is a complete copy, and a valid job by itself
    for rel in ("meta.json", "app/config/config_server.json", "app/config/config_client.json",
                "app/custom/client.py"):
        assert (rec.folder / rel).read_bytes() == (HELLO / rel).read_bytes()
    assert load_job(rec.folder).name == "hello-numpy"
    assert job_dirs(store) == [job_id]  # no temp folder left behind
    assert store.check() == []


def test_submit_bare_app_folder_becomes_a_job_folder(store):
    job_id = store.submit(HELLO / "app", submitter="a@org")
    rec = store.get(job_id)
    assert rec.name == "app" and rec.min_clients == 1
    job = load_job(rec.folder)  # a generated meta.json keeps the same name and deploy_map
    assert (rec.folder / "meta.json").is_file() and job.name == "app"
    assert job.deploy_map == {"app": ["server", "@ALL"]}


def test_submit_skips_pycache(tmp_path, store):
    src = variant(tmp_path, "cached")
    (src / "app" / "custom" / "__pycache__").mkdir()
    (src / "app" / "custom" / "__pycache__" / "client.cpython-311.pyc").write_bytes(b"\0")
    rec = store.get(store.submit(src, "a@org"))
    assert not (rec.folder / "app" / "custom" / "__pycache__").exists()


def test_list_newest_first_and_filters(tmp_path, store):
    a = store.submit(HELLO, "alice@org")
    b = store.submit(variant(tmp_path, "other"), "bob@org")
    c = store.submit(HELLO, "carol@org")
    d = store.submit(HELLO, "dave@org")
    run_to(store, a, S.COMPLETED)
    run_to(store, c)
    store.set_status(d, S.ABORTED, "aborted by admin@org")
    ids = lambda recs: [r.job_id for r in recs]  # noqa: E731
    assert ids(store.list()) == [d, c, b, a]
    assert ids(store.list(name="hello-numpy")) == [d, c, a]
    assert ids(store.list(name="other")) == [b]
    assert ids(store.list(name="nope")) == []
    assert ids(store.list(status=S.RUNNING)) == [c]
    assert ids(store.list(status=[S.COMPLETED, S.SUBMITTED])) == [b, a]
    assert ids(store.list(include_done=False)) == [c, b]
    assert ids(store.list(name="hello-numpy", include_done=False)) == [c]
    assert ids(store.list(limit=2)) == [d, c]
    assert ids(store.list(limit=0)) == []
    assert ids(store.list(status=S.COMPLETED, include_done=False)) == []
    with pytest.raises(ValueError, match="unknown job status 'DONE'"):
        store.list(status="DONE")
    with pytest.raises(ValueError, match="limit"):
        store.list(limit=-1)
    assert ids(store.unfinished()) == [b, c]  # oldest first, for recovery


def test_submit_argument_checks_store_nothing(store):
    with pytest.raises(ValueError, match="submitter"):
        store.submit(HELLO, submitter="")
    with pytest.raises(ValueError, match="meta_extra must be JSON-compatible"):
        store.submit(HELLO, "a@org", meta_extra={"f": object()})
    with pytest.raises(ValueError, match="meta_extra must be a dict"):
        store.submit(HELLO, "a@org", meta_extra=["x"])
    assert store.list() == [] and job_dirs(store) == []


# ---- invalid job folders -----------------------------------------------------------------------


def test_invalid_job_folder_leaves_nothing(tmp_path, store):
    bad = variant(tmp_path, "bad")
    (bad / "meta.json").write_text(json.dumps({"name": "bad", "deploy_map": {"nope": ["server", "@ALL"]}}))
    with pytest.raises(JobError, match="nope"):
        store.submit(bad, "a@org")
    with pytest.raises(JobError, match="does not exist"):
        store.submit(tmp_path / "missing", "a@org")
    broken = variant(tmp_path, "broken")
    (broken / "app" / "config" / "config_server.json").write_text("{ not json")
    with pytest.raises(JobError):
        store.submit(broken, "a@org")
    assert store.list() == [] and job_dirs(store) == [] and store.check() == []
    assert raw(store).execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_failure_while_recording_removes_the_copied_folder(store, monkeypatch):
    def boom(job):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(job_store, "_job_total_rounds", boom)  # fails inside the transaction
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.submit(HELLO, "a@org")
    assert store.list() == [] and job_dirs(store) == [] and store.check() == []


# ---- prefixes ----------------------------------------------------------------------------------


def test_prefix_resolution(tmp_path, store, monkeypatch):
    fixed = iter(["3f2a1b00-0000-4000-8000-000000000001", "3f2a9c00-0000-4000-8000-000000000002",
                  "77770000-0000-4000-8000-000000000003"])
    monkeypatch.setattr(job_store, "_new_job_id", lambda: next(fixed))
    a = store.submit(HELLO, "a@org")
    b = store.submit(variant(tmp_path, "other"), "a@org")
    c = store.submit(HELLO, "a@org")
    assert store.get("3f2a1").job_id == a
    assert store.get("3F2A9C").job_id == b  # case and spaces do not matter
    assert store.resolve(" 7777 ") == c
    assert store.resolve(a) == a
    with pytest.raises(AmbiguousJob) as e:
        store.get("3f2a")
    assert str(e.value) == "3f2a matches 3f2a1b.. (hello-numpy), 3f2a9c.. (other)"
    with pytest.raises(UnknownJob) as e:
        store.get("abcd")
    assert str(e.value) == "no job abcd"
    with pytest.raises(UnknownJob, match="no job zz!z"):
        store.get("zz!z")
    with pytest.raises(UnknownJob, match="too short: give at least 4 characters"):
        store.get("3f2")
    with pytest.raises(UnknownJob):
        store.get("")
    for exc in (UnknownJob, AmbiguousJob):
        assert issubclass(exc, JobStoreError) and issubclass(exc, LookupError)
    # every method that takes a job id accepts a unique prefix
    store.set_status("7777", S.WAITING)
    store.set_status("7777", S.RUNNING)
    store.record_round("7777", 0, 2, {"m": 1})
    assert store.last_completed_round("7777") == 0 and len(store.rounds("7777")) == 1
    with pytest.raises(AmbiguousJob):
        store.set_status("3f2a", S.ABORTED)
    assert store.get(a).status == S.SUBMITTED and store.get(b).status == S.SUBMITTED


def test_ambiguous_listing_widens_to_tell_ids_apart(store, monkeypatch):
    fixed = iter(["abcdef12-0000-4000-8000-000000000001", "abcdef34-0000-4000-8000-000000000002"])
    monkeypatch.setattr(job_store, "_new_job_id", lambda: next(fixed))
    store.submit(HELLO, "a@org")
    store.submit(HELLO, "a@org")
    with pytest.raises(AmbiguousJob) as e:
        store.get("abcd")
    assert str(e.value) == "abcd matches abcdef1.. (hello-numpy), abcdef3.. (hello-numpy)"


# ---- status ------------------------------------------------------------------------------------


def test_status_transitions_valid(store):
    job_id = store.submit(HELLO, "a@org")
    rec = store.set_status(job_id, S.WAITING, "waiting for 2 sites, 1 connected")
    assert (rec.status, rec.reason) == (S.WAITING, "waiting for 2 sites, 1 connected")
    rec = store.set_status(job_id, S.WAITING, "waiting for 2 sites, 2 connected")  # a new reason
    assert rec.reason == "waiting for 2 sites, 2 connected" and rec.started_at is None
    t0 = time.time()
    rec = store.set_status(job_id, S.RUNNING, sites=["site-1", "site-2"])
    assert rec.status == S.RUNNING and rec.reason is None and t0 <= rec.started_at <= time.time()
    assert rec.sites == ["site-1", "site-2"] and rec.ended_at is None
    started = rec.started_at
    rec = store.set_status(job_id, S.RUNNING, "resumed after round 2")  # a new reason only
    assert (rec.status, rec.reason, rec.started_at) == (S.RUNNING, "resumed after round 2", started)
    rec = store.set_status(job_id, S.COMPLETED)
    assert rec.done and rec.ended_at >= rec.started_at and store.get(job_id) == rec

    for path, final, reason in [((), S.ABORTED, "aborted by admin@org"),
                                ((), S.FAILED, "no site answered"),
                                ((S.WAITING,), S.ABORTED, "aborted by ops@org"),
                                ((S.WAITING,), S.FAILED, "1 of 2 sites ready, min_clients=2"),
                                ((S.WAITING, S.RUNNING), S.FAILED, "round 3: site-2 failed"),
                                ((S.WAITING, S.RUNNING), S.ABORTED, "aborted by a@org")]:
        jid = store.submit(HELLO, "a@org")
        for step in path:
            store.set_status(jid, step)
        rec = store.set_status(jid, final, reason)
        assert (rec.status, rec.reason) == (final, reason) and rec.ended_at is not None
        assert (rec.started_at is not None) == (S.RUNNING in path)


@pytest.mark.parametrize("path, bad", [
    ((), S.RUNNING), ((), S.COMPLETED), ((), S.SUBMITTED),
    ((S.WAITING,), S.COMPLETED), ((S.WAITING,), S.SUBMITTED),
    ((S.WAITING, S.RUNNING), S.WAITING),
    ((S.WAITING, S.RUNNING), S.SUBMITTED),
    ((S.WAITING, S.RUNNING, S.COMPLETED), S.RUNNING), ((S.WAITING, S.RUNNING, S.COMPLETED), S.FAILED),
    ((S.ABORTED,), S.ABORTED), ((S.FAILED,), S.WAITING),
])
def test_status_transitions_invalid(store, path, bad):
    job_id = store.submit(HELLO, "a@org")
    for step in path:
        store.set_status(job_id, step)
    before = store.get(job_id)
    with pytest.raises(JobStoreError) as e:
        store.set_status(job_id, bad, "nope")
    msg = str(e.value)
    assert f"cannot go from {before.status} to {bad}" in msg and job_id[:8] in msg and "hello-numpy" in msg
    assert store.get(job_id) == before


def test_status_argument_checks(store):
    job_id = store.submit(HELLO, "a@org")
    with pytest.raises(ValueError, match="unknown job status 'DONE'"):
        store.set_status(job_id, "DONE")
    with pytest.raises(ValueError, match="sites"):
        store.set_status(job_id, S.WAITING, sites="site-1")
    with pytest.raises(UnknownJob):
        store.set_status("ffffffff", S.WAITING)
    assert store.get(job_id).status == S.SUBMITTED


# ---- rounds ------------------------------------------------------------------------------------


def test_rounds_and_idempotent_rerecord(store):
    job_id = store.submit(HELLO, "a@org")
    assert store.rounds(job_id) == [] and store.last_completed_round(job_id) is None
    run_to(store, job_id)
    for r in (0, 2, 1):  # stored in any order, returned by round
        store.record_round(job_id, r, 5, {"loss": 1.0 / (r + 1), "round": r}, f"rounds/r{r}.npz")
    rounds = store.rounds(job_id)
    assert [x["round"] for x in rounds] == [0, 1, 2]
    assert rounds[1]["metrics"] == {"loss": 0.5, "round": 1} and rounds[1]["model_path"] == "rounds/r1.npz"
    assert all(x["total_rounds"] == 5 and x["recorded_at"] > 0 for x in rounds)
    assert store.last_completed_round(job_id) == 2
    # the server crashed after round 2 was written but before it was reported: record it again
    store.record_round(job_id, 2, 5, {"loss": 0.25, "round": 2}, None)
    rounds = store.rounds(job_id)
    assert len(rounds) == 3 and rounds[2]["metrics"] == {"loss": 0.25, "round": 2}
    assert rounds[2]["model_path"] is None
    assert raw(store).execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == 3
    rec = store.get(job_id)
    assert (rec.current_round, rec.total_rounds) == (2, 5)
    # numpy values (what aggregators produce) are stored as plain JSON numbers and lists
    store.record_round(job_id, 3, 6, {"acc": np.float32(0.5), "n": np.int64(7), "v": np.arange(3),
                                      "nan": float("nan")}, Path("result/m.npz"))
    r3 = store.rounds(job_id)[3]
    assert r3["metrics"]["acc"] == 0.5 and r3["metrics"]["n"] == 7 and r3["metrics"]["v"] == [0, 1, 2]
    assert np.isnan(r3["metrics"]["nan"]) and r3["model_path"] == "result/m.npz"
    assert store.get(job_id).total_rounds == 6 and store.last_completed_round(job_id) == 3


def test_record_round_checks(store):
    job_id = store.submit(HELLO, "a@org")
    run_to(store, job_id)
    with pytest.raises(ValueError, match="round must be an integer from 0 to"):
        store.record_round(job_id, -1, 5, {})
    with pytest.raises(ValueError, match="total_rounds"):
        store.record_round(job_id, 0, 0, {})
    with pytest.raises(ValueError, match="metrics must be a dict"):
        store.record_round(job_id, 0, 5, [1, 2])
    with pytest.raises(ValueError, match="metrics of round 0 must be JSON-compatible"):
        store.record_round(job_id, 0, 5, {"x": object()})
    assert store.rounds(job_id) == []
    store.record_round(job_id, 0, 5, {"ok": True})
    store.set_status(job_id, S.COMPLETED)
    with pytest.raises(JobStoreError, match="is COMPLETED: no more rounds"):
        store.record_round(job_id, 1, 5, {})
    assert len(store.rounds(job_id)) == 1


# ---- delete / clone ----------------------------------------------------------------------------


def test_delete_rules(store):
    keep = store.submit(HELLO, "a@org")
    job_id = store.submit(HELLO, "a@org")
    with pytest.raises(JobStoreError, match="is SUBMITTED: only finished jobs"):
        store.delete(job_id)
    run_to(store, job_id)
    store.record_round(job_id, 0, 5, {"m": 1})
    with pytest.raises(JobStoreError, match="is RUNNING"):
        store.delete(job_id)
    store.set_status(job_id, S.FAILED, "round 2: site-1 failed")
    (store.get(job_id).workspace / "result").mkdir()  # what a job runner writes is removed too
    gone = store.delete(job_id[:8])
    assert gone.job_id == job_id and gone.status == S.FAILED
    with pytest.raises(UnknownJob):
        store.get(job_id)
    with pytest.raises(UnknownJob):
        store.delete(job_id)
    assert job_dirs(store) == [keep] and [r.job_id for r in store.list()] == [keep]
    db = raw(store)
    assert db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == 0
    assert store.check() == []


def test_clone(store):
    src = store.submit(HELLO, "alice@org", meta_extra={"study": "s1"})
    run_to(store, src)
    store.record_round(src, 0, 5, {"m": 1})
    store.set_status(src, S.COMPLETED)
    new = store.clone(src[:6], submitter="bob@org")
    assert new != src
    rec, old = store.get(new), store.get(src)
    assert (rec.status, rec.submitter, rec.name, rec.min_clients, rec.total_rounds) == (
        S.SUBMITTED, "bob@org", "hello-numpy", 2, 5)
    assert rec.current_round is None and rec.started_at is None and store.rounds(new) == []
    assert rec.extra == {"study": "s1", "cloned_from": src}
    files = sorted(p.relative_to(old.folder) for p in old.folder.rglob("*"))
    assert files == sorted(p.relative_to(rec.folder) for p in rec.folder.rglob("*"))
    assert (rec.folder / "meta.json").read_bytes() == (old.folder / "meta.json").read_bytes()
    assert old.status == S.COMPLETED and len(store.rounds(src)) == 1  # the source is untouched
    # the clone is independent: deleting the source keeps it
    store.delete(src)
    assert store.get(new).folder.is_dir()
    assert store.get(store.clone(new, "carol@org")).extra["cloned_from"] == new


# ---- restarts ----------------------------------------------------------------------------------


def test_reopen_sees_everything(tmp_path):
    root = tmp_path / "ws"
    store = JobStore(root)
    a = store.submit(HELLO, "alice@org", meta_extra={"k": [1, 2]})
    b = store.submit(variant(tmp_path, "other"), "bob@org")
    c = store.submit(HELLO, "carol@org")
    run_to(store, a)
    for r in range(3):
        store.record_round(a, r, 5, {"r": r}, f"rounds/{r}.npz")
    run_to(store, b, S.COMPLETED)
    store.set_status(c, S.WAITING, "waiting for GPUs")
    before = {r.job_id: r for r in store.list()}
    rounds_before = store.rounds(a)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(JobStoreError, match="closed"):
        store.list()
    with pytest.raises(JobStoreError, match="closed"):
        store.submit(HELLO, "a@org")
    assert job_dirs(JobStore(root)) == sorted([a, b, c])  # nothing copied by the refused submit

    with JobStore(root) as again:
        assert {r.job_id: r for r in again.list()} == before
        assert [r.job_id for r in again.list()] == [c, b, a]
        assert again.rounds(a) == rounds_before and again.last_completed_round(a) == 2
        assert [r.job_id for r in again.unfinished()] == [a, c]
        assert again.get(c).reason == "waiting for GPUs" and again.get(a).extra == {"k": [1, 2]}
        # and it carries on where it stopped
        again.record_round(a, 3, 5, {"r": 3})
        again.set_status(a, S.COMPLETED)
        assert again.check() == []
    with JobStore(root) as third:
        assert third.get(a).status == S.COMPLETED and third.last_completed_round(a) == 3


def test_database_settings(store):
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert raw(store).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.db_path == store.root / "jobs.db"


def test_newer_schema_is_refused(tmp_path):
    root = tmp_path / "ws"
    JobStore(root).close()
    conn = sqlite3.connect(str(root / "jobs.db"))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(JobStoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this "
                                            f"flshell understands \\({SCHEMA_VERSION}\\).*upgrade flshell"):
        JobStore(root)


def test_not_a_database_is_refused(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobs.db").write_bytes(b"this is not an sqlite file, not at all" * 100)
    with pytest.raises(JobStoreError, match="is not a usable job store"):
        JobStore(root)


# ---- check ---------------------------------------------------------------------------------------


def test_check_reports_missing_folders_orphans_and_temp_leftovers(store):
    a = store.submit(HELLO, "a@org")
    b = store.submit(HELLO, "a@org")
    shutil.rmtree(store.get(a).workspace)  # e.g. removed by hand
    problems = store.check()
    assert len(problems) == 1 and f"job {a[:8]} (hello-numpy)" in problems[0] and "missing" in problems[0]
    # the store keeps working: the record is there, its folder path simply does not exist
    rec = store.get(a)
    assert not rec.folder.exists() and len(store.list()) == 2
    run_to(store, a, S.ABORTED)
    with pytest.raises(JobStoreError, match="folder .* is missing"):
        store.clone(a, "a@org")
    # a folder without a row (a crash between rename and commit) and a dead process's temp folder
    orphan = store.jobs_dir / "0badc0de-0000-4000-8000-000000000000"
    (orphan / "job").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = store.jobs_dir / f".submit-{dead.pid}-0badc0de"
    (stale / "job").mkdir(parents=True)
    live = store.jobs_dir / f".submit-{os.getpid()}-feedbeef"  # in progress: not a problem
    live.mkdir()
    problems = store.check()
    assert any(str(orphan) in p and "no job in jobs.db" in p for p in problems)
    assert any(str(stale) in p and "interrupted submit" in p for p in problems)
    assert not any(str(live) in p for p in problems) and len(problems) == 3
    problems = store.check(repair=True)
    assert any("removed" in p and str(stale) in p for p in problems)
    assert not stale.exists() and orphan.exists() and live.exists()  # job folders are never removed
    assert len(store.check()) == 2
    # deleting the job whose folder vanished works and clears that problem
    store.delete(a)
    assert store.check() == [f"{orphan}: a job folder with no job in jobs.db (left by an interrupted submit?)"]
    assert store.get(b).folder.is_dir()


# ---- a crash -------------------------------------------------------------------------------------


CHILD = textwrap.dedent("""
    import sys
    from runtime.server.job_store import JobStore

    store = JobStore(sys.argv[1])
    job = store.submit(sys.argv[2], "crash@test", meta_extra={"pid": 1})
    store.set_status(job, "WAITING", "waiting for sites")
    store.set_status(job, "RUNNING", sites=["site-1", "site-2"])
    print("job", job, flush=True)
    r = 0
    while True:
        store.record_round(job, r, 1000000, {"loss": 1.0 / (r + 1), "round": r}, f"rounds/{r}.npz")
        print("round", r, flush=True)
        r += 1
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_rounds_leaves_a_consistent_store(tmp_path):
    root = tmp_path / "ws"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(HELLO)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id, printed = None, -1
    try:
        deadline = time.monotonic() + 120
        while printed < 40:
            assert time.monotonic() < deadline, "the child made no progress"
            line = proc.stdout.readline()
            assert line, f"the child ended early: {proc.stderr.read()}"
            kind, value = line.split()
            if kind == "job":
                job_id = value
            else:
                printed = int(value)
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the loop of round recordings
        proc.wait(timeout=30)
        for line in proc.stdout.read().splitlines():  # rounds it reported after our last read
            kind, value = line.split()
            printed = max(printed, int(value))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and job_id

    conn = sqlite3.connect(str(root / "jobs.db"))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    with JobStore(root) as store:
        assert store.check() == []
        rec = store.get(job_id)
        assert (rec.status, rec.sites, rec.extra) == (S.RUNNING, ["site-1", "site-2"], {"pid": 1})
        rounds = store.rounds(job_id)
        last = store.last_completed_round(job_id)
        # every round the child reported done is there; maybe one more it had committed, nothing torn
        assert last >= printed and [r["round"] for r in rounds] == list(range(last + 1))
        for r in rounds:
            assert r["metrics"] == {"loss": 1.0 / (r["round"] + 1), "round": r["round"]}
            assert r["model_path"] == f"rounds/{r['round']}.npz"
        assert rec.current_round == last
        assert [u.job_id for u in store.unfinished()] == [job_id]
        # a restarted server resumes from there
        store.record_round(job_id, last + 1, last + 2, {"loss": 0.0, "round": last + 1})
        store.set_status(job_id, S.COMPLETED)
        assert store.get(job_id).status == S.COMPLETED


# ---- threads -------------------------------------------------------------------------------------


def test_threads_submit_and_update_concurrently(tmp_path):
    root = tmp_path / "ws"
    stores = [JobStore(root), JobStore(root)]  # two connections to one database, as two processes would
    n_threads, per_thread, n_rounds = 8, 3, 4
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []
    made: dict[int, list[str]] = {}

    def worker(i: int) -> None:
        st = stores[i % 2]
        try:
            barrier.wait()
            mine = made.setdefault(i, [])
            for k in range(per_thread):
                jid = st.submit(HELLO, f"user{i}@org", meta_extra={"worker": i, "k": k})
                mine.append(jid)
                st.set_status(jid, S.WAITING, f"worker {i}")
                st.set_status(jid[:12], S.RUNNING)
                for r in range(n_rounds):
                    st.record_round(jid, r, n_rounds, {"worker": i, "k": k, "r": r})
                    st.list(limit=5)
                st.record_round(jid, n_rounds - 1, n_rounds, {"worker": i, "k": k, "r": n_rounds - 1})
                assert st.get(jid).current_round == n_rounds - 1
                st.set_status(jid, S.COMPLETED)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    for st in stores:
        st.close()

    with JobStore(root) as store:
        jobs = store.list()
        assert len(jobs) == n_threads * per_thread == len({j.job_id for j in jobs})
        assert all(j.status == S.COMPLETED for j in jobs)
        for i, ids in made.items():
            for k, jid in enumerate(ids):
                rec = store.get(jid)
                assert rec.extra == {"worker": i, "k": k} and rec.submitter == f"user{i}@org"
                assert [r["metrics"] for r in store.rounds(jid)] == [
                    {"worker": i, "k": k, "r": r} for r in range(n_rounds)]
        assert sorted(job_dirs(store)) == sorted(j.job_id for j in jobs)
        assert store.check() == []


def test_racing_transitions_have_one_winner(tmp_path):
    root = tmp_path / "ws"
    stores = [JobStore(root), JobStore(root)]
    job_id = stores[0].submit(HELLO, "a@org")
    stores[0].set_status(job_id, S.WAITING)
    stores[0].set_status(job_id, S.RUNNING)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    ends = (S.COMPLETED, S.FAILED, S.ABORTED)

    def race(i: int) -> None:  # each ends the job its own way: one of them does
        barrier.wait()
        try:
            stores[i % 2].set_status(job_id, ends[i % 3], f"by {i}")
            outcomes.append("won")
        except JobStoreError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes.count("won") == 1, outcomes
    final = stores[1].get(job_id)
    assert final.status in ends and final.ended_at is not None
    # everyone else saw the state the winner left, under the write lock, and was refused
    assert all(f"cannot go from {final.status} to" in o for o in outcomes if o != "won"), outcomes
    for st in stores:
        st.close()


def test_rounds_say_who_answered(store):
    job_id = store.submit(HELLO, "alice")
    run_to(store, job_id)
    store.record_round(job_id, 0, 2, {"loss": 1.0}, outcome={
        "round": 0, "sites_ok": ["site-1"], "sites_failed": ["site-2"], "sites_timed_out": [],
        "seconds": 1.5, "metrics": {"ignored": 1}})
    store.record_round(job_id, 1, 2, {"loss": 0.5})
    first, second = store.rounds(job_id)
    assert first["sites_ok"] == ["site-1"] and first["sites_failed"] == ["site-2"]
    assert first["seconds"] == 1.5 and first["metrics"] == {"loss": 1.0}
    assert "sites_ok" not in second


def test_a_version_1_store_is_migrated_and_keeps_its_rounds(tmp_path):
    ws = tmp_path / "ws"
    s = JobStore(ws)
    job_id = s.submit(HELLO, "alice")
    run_to(s, job_id)
    s.record_round(job_id, 0, 2, {"loss": 1.0})
    s.close()
    with sqlite3.connect(str(ws / "jobs.db")) as conn:  # as flshell with schema 1 left it
        conn.execute("ALTER TABLE rounds RENAME TO r2")
        v1 = next(st for st in job_store._MIGRATIONS[1] if "TABLE IF NOT EXISTS rounds" in st)
        conn.execute(v1)
        conn.execute("INSERT INTO rounds SELECT job_id, round, total_rounds, metrics, model_path, "
                     "recorded_at FROM r2")
        conn.execute("DROP TABLE r2")
        conn.execute("DROP TABLE transitions")
        conn.execute("PRAGMA user_version=1")
    s = JobStore(ws)
    try:
        assert s.rounds(job_id)[0]["metrics"] == {"loss": 1.0}
        s.record_round(job_id, 1, 2, {"loss": 0.5}, outcome={"sites_failed": ["site-3"]})
        assert s.rounds(job_id)[1]["sites_failed"] == ["site-3"]
        assert raw(s).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    finally:
        s.close()


def test_a_version_2_store_gets_a_history_of_each_job_submitted_then_as_it_is(tmp_path):
    ws = tmp_path / "ws"
    s = JobStore(ws)
    waiting, running = s.submit(HELLO, "alice"), s.submit(HELLO, "bob")
    fresh = s.submit(HELLO, "carol")
    s.set_status(waiting, S.WAITING, "waiting for sites")
    run_to(s, running)
    s.close()
    with sqlite3.connect(str(ws / "jobs.db")) as conn:  # as flshell with schema 2 left it
        conn.execute("DROP TABLE transitions")
        conn.execute("PRAGMA user_version=2")
    s = JobStore(ws)
    try:
        assert [t["status"] for t in s.transitions(fresh)] == [S.SUBMITTED]
        assert [(t["status"], t["reason"]) for t in s.transitions(waiting)] == [
            (S.SUBMITTED, None), (S.WAITING, "waiting for sites")]
        assert [t["status"] for t in s.transitions(running)] == [S.SUBMITTED, S.RUNNING]
        s.set_status(running, S.COMPLETED)
        assert [t["status"] for t in s.transitions(running)] == [S.SUBMITTED, S.RUNNING, S.COMPLETED]
    finally:
        s.close()


def test_the_history_holds_every_move_in_order_and_goes_with_the_job(store):
    job_id = store.submit(HELLO, "alice")
    store.set_status(job_id, S.WAITING, "waiting for a free run slot")
    store.set_status(job_id, S.WAITING, "deploying to 2 sites")
    store.set_status(job_id, S.RUNNING)
    store.set_status(job_id, S.RUNNING, "resumed after round 1")
    store.set_status(job_id, S.FAILED, "round 2: site-2 failed")
    history = store.transitions(job_id)
    assert [(t["status"], t["reason"]) for t in history] == [
        (S.SUBMITTED, None), (S.WAITING, "waiting for a free run slot"),
        (S.WAITING, "deploying to 2 sites"), (S.RUNNING, None), (S.RUNNING, "resumed after round 1"),
        (S.FAILED, "round 2: site-2 failed")]
    assert [t["at"] for t in history] == sorted(t["at"] for t in history)
    with pytest.raises(JobStoreError):
        store.set_status(job_id, S.RUNNING)  # refused: nothing added
    assert len(store.transitions(job_id)) == 6
    store.delete(job_id)
    assert raw(store).execute("SELECT COUNT(*) FROM transitions").fetchone()[0] == 0
