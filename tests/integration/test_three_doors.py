"""One federation, three doors: the same job run by the simulator, by the embedded local
federation (what `flshell` opens) and by a POC (server and sites as processes, mutual TLS)
leaves the same job-store rows (its states and transitions, in order, and its rounds), the same
result folder (modulo ids and times) and the same event sequence: a job takes exactly the same
path through the server whichever way it is run; only the transport differs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.admin import AdminError, Session
from runtime.server.job_store import JobStore
from tests.integration.conftest import HELLO_NUMPY, copy_job, edit_json, procs_mentioning

pytestmark = pytest.mark.slow

# the events of a job's own life (heartbeats, logs, metrics batches and operator notices aside)
JOB_EVENTS = ("job_status", "round_started", "round_completed", "task_assigned", "task_result")
SITE_EVENTS = ("task_assigned", "task_result")  # one per site: their order among sites is free


class Recorder:
    """Every job event the admin port's watch stream delivers, from before the job's submission
    until the job ended (its final job_status)."""

    def __init__(self, session: Session) -> None:
        self.stream = session.watch(types=JOB_EVENTS)
        self.events: list[Any] = []
        self.job_id: str | None = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for ev in self.stream:
                self.events.append(ev)
                if ev.type == "job_status" and ev.get("status") in ("COMPLETED", "FAILED", "ABORTED") \
                        and (self.job_id is None or ev.get("job_id") == self.job_id):
                    self.ended.set()
        except AdminError:
            pass  # the server went away (a simulation's closes its port as it ends)

    def close(self) -> None:
        self.stream.close()
        self._thread.join(10)


def job(tmp_path: Path) -> Path:
    folder = copy_job(HELLO_NUMPY, tmp_path, "three-doors")
    edit_json(folder / "meta.json", lambda m: m.update(name="three-doors"))
    edit_json(folder / "app" / "config" / "config_server.json", lambda c: c.update(num_rounds=2))
    return folder


def via_simulator(tmp_path: Path, folder: Path) -> tuple[Path, str, list]:
    from runtime.sim.simulator import Simulator

    ws = tmp_path / "sim"
    sim = Simulator(folder, workspace=ws, n_clients=2, admin_port=0)
    sim.prepare()
    with Session(sim.admin_server.address) as session:
        rec = Recorder(session)
        sim.start()
        rec.job_id = sim.job_id
        result = sim.wait(120)
        assert result.status == "COMPLETED", result.reason
        rec.close()  # the simulation's admin port closed as it ended: the stream has it all
    return ws / "server", sim.job_id, rec.events


def via_embedded(tmp_path: Path, folder: Path) -> tuple[Path, str, list]:
    from runtime.federation import LocalFederation

    ws = tmp_path / "embedded"
    with LocalFederation(ws, n_sites=2) as fed, Session(fed.admin_address) as session:
        rec = Recorder(session)
        rec.job_id = job_id = session.submit_job(folder)
        assert session.wait_for_job(job_id, timeout=120)["status"] == "COMPLETED"
        assert rec.ended.wait(30)
        rec.close()
    return ws / "server", job_id, rec.events


def via_poc(tmp_path: Path, folder: Path) -> tuple[Path, str, list]:
    from runtime.federation import poc

    root = tmp_path / "poc"
    poc.prepare(root, 2)
    try:
        poc.start(root, timeout=60)
        with poc.admin_session(root) as session:
            rec = Recorder(session)
            rec.job_id = job_id = session.submit_job(folder)
            assert session.wait_for_job(job_id, timeout=120)["status"] == "COMPLETED"
            assert rec.ended.wait(30)
            rec.close()
    finally:
        poc.stop(root)
    assert not procs_mentioning(str(root))
    return root / "server", job_id, rec.events


def store_rows(server_ws: Path, job_id: str) -> dict[str, Any]:
    """The job's rows in the server's store, without ids, times and who submitted it."""
    with JobStore(server_ws) as store:
        rec = store.get(job_id)
        rounds = [{k: v for k, v in r.items() if k not in ("recorded_at", "model_path", "seconds")}
                  for r in store.rounds(job_id)]
        return {
            "record": (rec.name, rec.status, rec.reason, rec.sites, rec.min_clients,
                       rec.current_round, rec.total_rounds),
            "transitions": [(t["status"], t["reason"]) for t in store.transitions(job_id)],
            "rounds": rounds,
        }


def result_folder(server_ws: Path, job_id: str) -> tuple[list[str], np.ndarray]:
    """The files of the job's server workspace (its path names) and the final model."""
    root = server_ws / "jobs" / job_id
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts
                   and not p.name.startswith("events.out.tfevents"))  # named by host and time
    with np.load(root / "result" / "global_model.npz", allow_pickle=False) as d:
        return files, d["weights"]


def event_sequence(events: list, job_id: str) -> tuple[list, list]:
    """The job's events as (its own, in order) and (its sites', sorted within each round)."""
    own, per_site = [], []
    current_round = None
    for ev in events:
        if ev.get("job_id") != job_id:
            continue
        if ev.type == "job_status":
            own.append((ev.type, ev.get("status"), ev.get("reason")))
        elif ev.type in ("round_started", "round_completed"):
            current_round = ev.get("round")
            keep = ("round", "total_rounds", "sites", "sites_ok", "sites_failed", "metrics")
            own.append((ev.type, tuple((k, repr(ev.get(k))) for k in keep if k in ev.data)))
        elif ev.type in SITE_EVENTS:
            per_site.append((current_round, ev.type, ev.get("site"), ev.get("task"), ev.get("ok")))
    return own, sorted(per_site, key=repr)


def test_the_same_job_takes_the_same_path_through_every_door(tmp_path):
    folder = job(tmp_path)
    runs = {"sim": via_simulator(tmp_path, folder), "embedded": via_embedded(tmp_path, folder),
            "poc": via_poc(tmp_path, folder)}
    rows = {door: store_rows(ws, job_id) for door, (ws, job_id, _) in runs.items()}
    results = {door: result_folder(ws, job_id) for door, (ws, job_id, _) in runs.items()}
    events = {door: event_sequence(evs, job_id) for door, (_, job_id, evs) in runs.items()}

    assert rows["sim"]["transitions"][0] == ("SUBMITTED", None)
    assert rows["sim"]["transitions"][-2:] == [("RUNNING", None), ("COMPLETED", None)]
    assert len(rows["sim"]["rounds"]) == 2
    own, per_site = events["sim"]
    assert own[0] == ("job_status", "SUBMITTED", None) and own[-1] == ("job_status", "COMPLETED", None)
    assert len(per_site) == 2 * 2 * 2  # 2 rounds x 2 sites x (assigned, result)
    for door in ("embedded", "poc"):
        assert rows[door] == rows["sim"], door
        assert results[door][0] == results["sim"][0], door
        assert np.array_equal(results[door][1], results["sim"][1]), door  # bit for bit
        assert events[door] == events["sim"], door
