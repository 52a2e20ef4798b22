"""The admin port end to end: a real ServerEngine, JobStore and JobManager behind the AdminServer
on 127.0.0.1, driven through runtime.admin.Session; jobs run on site agents over gRPC."""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import zipfile
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import runtime.server.job_store as job_store_module
from flshell.commands import JOB_UNSUCCESSFUL, OK, run_script
from runtime.admin import (AdminError, AmbiguousJob, BadUpload, InvalidJob, NotFound, Refused, ServerUnreachable,
                           Session, UnknownJob)
from runtime.client.agent import SiteAgent
from runtime.client.apps import DownloadedApps
from runtime.client.sitelog import LogSink
from runtime.server.admin_service import SERVICE_NAME
from runtime.transport.grpc_client import GrpcSiteTransport
from tests.integration.conftest import grpc_federation

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"
WAIT = 60  # seconds; runs take a few, this only catches hangs
WATCH_QUEUE = 20
FLOOD = 2000  # events of ~1 KB: more than gRPC's flow-control windows hold


def _job_copy(tmp_path: Path, rounds: int = 2, name: str = "hello-numpy") -> Path:
    folder = tmp_path / "jobs" / name
    shutil.copytree(HELLO, folder, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = folder / "app" / "config" / "config_server.json"
    data = json.loads(cfg.read_text())
    data["num_rounds"] = rounds
    cfg.write_text(json.dumps(data))
    return folder


def _zip(entries: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.fixture
def server(tmp_path):
    with grpc_federation(tmp_path, sites=(), admin_kwargs={"watch_queue": WATCH_QUEUE}) as fed:
        yield fed


@pytest.fixture
def session(server):
    with Session(server.admin.address, user="alice", timeout=10) as s:
        yield s


@pytest.fixture
def sites(server, tmp_path):
    """Two site agents on the server's site port, like hosts of a real federation."""
    sink = LogSink(interval=0.2)
    agents, transports = [], []
    try:
        for name in ("site-1", "site-2"):
            t = GrpcSiteTransport(server.fl.address)
            transports.append(t)
            agent = SiteAgent(name, t, DownloadedApps(t, name, tmp_path / name), tmp_path / name, sink,
                              poll_timeout=0.5)
            agent.register()
            agent.start()
            agents.append(agent)
        yield agents
    finally:
        for agent in agents:
            agent.stop(timeout=5)
        for t in transports:
            t.close()
        sink.close()


def test_submit_list_get_with_prefixes(session, tmp_path):
    job_id = session.submit_job(_job_copy(tmp_path))
    assert len(job_id) == 36
    job = session.get_job(job_id[:8])
    assert job["job_id"] == job_id and job["name"] == "hello-numpy"
    assert job["submitter"] == "alice"
    assert job["status"] in ("SUBMITTED", "WAITING") and job["rounds"] == []
    assert session.get_job(job_id[:4])["job_id"] == job_id
    listed = session.list_jobs()
    assert [j["job_id"] for j in listed] == [job_id] and listed[0]["short_id"] == job_id[:8]
    assert session.list_jobs(name="other") == []
    assert session.list_jobs(include_done=False)[0]["job_id"] == job_id
    # no sites: the job waits, and says why; wait_for_job gives up with the id and the status
    with pytest.raises(TimeoutError, match=f"still WAITING .*{job_id}"):
        session.wait_for_job(job_id, timeout=0.5, poll=0.1)
    assert "waiting for sites" in session.get_job(job_id)["reason"]


def test_typed_errors(session, tmp_path, monkeypatch):
    with pytest.raises(UnknownJob, match="no job"):
        session.get_job("ffffffff")
    with pytest.raises(UnknownJob, match="too short"):
        session.get_job("ab")
    ids = iter(["abcd0001-0000-4000-8000-000000000000", "abcd0002-0000-4000-8000-000000000000"])
    monkeypatch.setattr(job_store_module, "_new_job_id", lambda: next(ids))
    folder = _job_copy(tmp_path)
    session.submit_job(folder)
    session.submit_job(folder)
    with pytest.raises(AmbiguousJob, match="abcd0001"):
        session.get_job("abcd")
    assert session.get_job("abcd0002")["job_id"].startswith("abcd0002")
    with pytest.raises(BadUpload, match=r'"\.\." path component'):
        session.submit_archive(_zip({"job/meta.json": "{}", "job/../x": "boom"}))
    with pytest.raises(BadUpload, match="does not exist"):
        session.submit_job(tmp_path / "no-such-job")  # refused before anything is sent
    bad = _job_copy(tmp_path, name="bad-job")
    (bad / "meta.json").write_text(json.dumps({"name": "bad-job", "deploy_map": {"app": ["server", "@ALL"]},
                                               "min_clients": "two"}))
    with pytest.raises(InvalidJob, match="min_clients"):
        session.submit_job(bad)
    with pytest.raises(Refused, match="abort it first"):
        session.delete_job("abcd0001")  # not finished yet
    with pytest.raises(NotFound, match="no log"):
        list(session.tail_log("abcd0001"))
    assert len(session.list_jobs()) == 2  # nothing refused was stored


def test_abort_clone_delete_download_without_sites(session, tmp_path):
    job_id = session.submit_job(_job_copy(tmp_path))
    aborted = session.abort_job(job_id[:8])
    assert aborted["status"] == "ABORTED" and "alice" in aborted["reason"]
    assert session.wait_for_job(job_id, timeout=5)["status"] == "ABORTED"
    with pytest.raises(Refused, match="already ended"):
        session.abort_job(job_id)
    clone = session.clone_job(job_id)
    assert clone != job_id and session.get_job(clone)["name"] == "hello-numpy"
    folder = session.download_job(job_id, tmp_path / "dl")
    assert folder == tmp_path / "dl" / job_id
    assert json.loads((folder / "job" / "meta.json").read_text())["name"] == "hello-numpy"
    assert not [p for p in (tmp_path / "dl").iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(AdminError, match="already exists"):
        session.download_job(job_id, tmp_path / "dl")
    assert session.delete_job(job_id)["job_id"] == job_id
    with pytest.raises(UnknownJob):
        session.get_job(job_id)
    assert [j["job_id"] for j in session.list_jobs()] == [clone]


def test_a_job_runs_watched_logged_and_downloaded(server, session, sites, tmp_path):
    watcher = Session(server.admin.address, timeout=10)
    idle = Session(server.admin.address, timeout=10)
    try:
        events = watcher.watch(types=["job_status"])  # listening once watch() returns
        stalled = idle.watch(types=["job_status", "log", "test_end"])  # reads one event, then stalls
        job_id = session.submit_job(_job_copy(tmp_path, rounds=2))
        first = next(stalled)
        assert (first.type, first.get("job_id"), first.get("status")) == ("job_status", job_id, "SUBMITTED")

        seen = []
        for ev in events:
            if ev.get("job_id") == job_id:
                seen.append(ev.get("status"))
            if ev.get("status") == "RUNNING":
                break
        with pytest.raises(Refused, match="abort it first"):
            session.delete_job(job_id)
        followed: list[str] = []
        tail = threading.Thread(target=lambda: followed.extend(session.tail_log(job_id, follow=True, lines=-1)))
        tail.start()
        # a flood on the bus: the stalled watcher's queue overflows instead of slowing anyone
        for i in range(FLOOD):
            server.manager.events.publish("log", job_id=job_id, site="x", line=f"{i:05d} " + "." * 1000)

        final = session.wait_for_job(job_id[:8], timeout=WAIT, poll=1.0)
        assert final["status"] == "COMPLETED", final
        assert [r["round"] for r in final["rounds"]] == [0, 1]
        for ev in events:
            if ev.get("job_id") == job_id:
                seen.append(ev.get("status"))
            if ev.get("job_id") == job_id and ev.get("status") == "COMPLETED":
                break
        assert seen[0] in ("SUBMITTED", "WAITING") and seen[-2:] == ["RUNNING", "COMPLETED"]

        tail.join(WAIT)
        assert not tail.is_alive(), "a followed log must end once the job is done"
        assert any("COMPLETED" in line for line in followed)
        last_lines = list(session.tail_log(job_id, lines=3))
        assert len(last_lines) == 3 and last_lines == followed[-3:]
        with pytest.raises(NotFound, match="site-9"):
            list(session.tail_log(job_id, site="site-9"))

        folder = session.download_job(job_id[:8], tmp_path / "dl")
        assert (folder / "result" / "global_model.npz").is_file()
        assert (folder / "logs" / "server.log").is_file()

        # the stalled watcher missed events: it is told how many, and still gets the newest
        server.manager.events.publish("test_end")
        got, dropped = 0, 0
        for ev in stalled:
            got += 1
            if ev.type == "dropped":
                dropped += ev.get("count")
            if ev.type == "test_end":
                break
        assert dropped > 0, f"{got} events came through, none dropped: the flood was too small"
        assert got + dropped >= FLOOD
        stalled.close()

        sites_listed = {s["name"]: s["status"] for s in session.list_sites()}
        assert sites_listed == {"site-1": "CONNECTED", "site-2": "CONNECTED"}
        info = session.system_info()
        assert info["workspace"] == str(server.manager.workspace)

        out, err = io.StringIO(), io.StringIO()
        assert run_script(session, f"wait_job {job_id[:8]} --timeout 5; sites", out, err) == OK, err.getvalue()
        assert f"job {job_id[:8]} (hello-numpy) COMPLETED" in out.getvalue()
        assert "site-1" in out.getvalue()
    finally:
        watcher.close()
        idle.close()


def test_tail_log_follows_appended_lines_until_the_job_ends(session, tmp_path):
    job_id = session.submit_job(_job_copy(tmp_path))  # no sites: it waits; we write its log
    log = Path(session.get_job(job_id)["workspace"]) / "logs" / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("one\ntwo\nthree\n")
    assert list(session.tail_log(job_id, lines=2)) == ["two", "three"]
    assert list(session.tail_log(job_id, lines=-1)) == ["one", "two", "three"]
    assert list(session.tail_log(job_id, lines=0)) == []
    lines = session.tail_log(job_id, lines=1, follow=True)
    assert next(lines) == "three"
    with log.open("a") as f:
        f.write("four\nhalf")
        f.flush()
        assert next(lines) == "four"
        f.write(" a line\n")  # a line arrives whole, however it was written
        f.flush()
        assert next(lines) == "half a line"
    session.abort_job(job_id)
    assert list(lines) == []  # nothing more was written: it ends by itself once the job is done
    stopped = session.tail_log(job_id, lines=0, follow=True)
    assert list(stopped) == []  # a done job's log is not followed forever


def test_health_reports_serving_then_not_serving(server):
    with grpc.insecure_channel(server.admin.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        server.admin.health.not_serving()
        for service in ("", SERVICE_NAME):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_server_unreachable_on_a_closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Session(f"127.0.0.1:{port}", timeout=5) as session:
        with pytest.raises(ServerUnreachable, match=f"server unreachable at 127.0.0.1:{port}"):
            session.list_jobs()
        out, err = io.StringIO(), io.StringIO()
        assert run_script(session, "list_jobs", out, err) == 3
        assert "server unreachable" in err.getvalue()


def test_wait_job_exit_code_for_an_aborted_job(session, tmp_path):
    job_id = session.submit_job(_job_copy(tmp_path))
    out, err = io.StringIO(), io.StringIO()
    assert run_script(session, f"abort_job -y {job_id}\nwait_job {job_id}", out, err) == JOB_UNSUCCESSFUL
    assert "ABORTED" in out.getvalue()


def test_hello_says_the_api_and_the_features_and_typed_replies_carry_the_whole_job(
        server, session, sites, tmp_path):
    """Hello: the admin API version and what the server offers. The typed job, site and event
    messages give the Session exactly what the server's manager holds."""
    from runtime.transport.admin_messages import API_VERSION

    hello = session.server()
    assert hello["api"] == API_VERSION == 2
    assert {"jobs", "job_details", "sites", "events", "gpu_history", "transitions"} <= set(hello["features"])
    assert session.supports("gpu_history") and not session.supports("time_travel")

    events = session.watch(types=["job_status"])
    job_id = session.submit_job(_job_copy(tmp_path, rounds=2))
    assert session.wait_for_job(job_id, timeout=WAIT, poll=1.0)["status"] == "COMPLETED"
    got, held = session.get_job(job_id), server.manager.get_job(job_id)
    assert got["short_id"] == job_id[:8]
    for key in ("job_id", "name", "status", "reason", "submitter", "submitted_at", "started_at",
                "ended_at", "current_round", "total_rounds", "sites", "min_clients", "extra",
                "transitions", "failed_sites", "failure_details", "results"):
        assert got[key] == held[key], key
    assert got["folder"] == held["folder"] and got["workspace"] == held["workspace"]
    assert [{k: r[k] for k in held["rounds"][0]} for r in got["rounds"]] == held["rounds"]
    assert [t["status"] for t in got["transitions"]] == ["SUBMITTED", "WAITING", "RUNNING", "COMPLETED"]
    assert session.list_jobs()[0]["job_id"] == job_id
    listed = {s["name"]: s for s in session.list_sites()}
    assert listed["site-1"]["info"] == server.engine.sites.get("site-1").snapshot()["info"]
    statuses = []
    for ev in events:
        assert isinstance(ev.seq, int) and ev.ts > 0 and ev.type == "job_status"
        statuses.append(ev.get("status"))
        if ev.get("status") == "COMPLETED":
            break
    events.close()
    assert statuses == [t["status"] for t in got["transitions"]]


def test_a_server_older_than_hello_is_api_1_and_offers_nothing_new():
    """An older server answers Hello with UNIMPLEMENTED: the Session takes it for API 1, and a
    front end asking supports() leaves the newer calls out instead of failing."""
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Session(f"127.0.0.1:{port}", timeout=5) as s:
            assert s.server() == {"api": 1, "version": "older than 0.1", "features": []}
            assert not s.supports("gpu_history")
    finally:
        server.stop(0)
