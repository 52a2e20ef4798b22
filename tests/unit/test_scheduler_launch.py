"""The scheduler builds a job's components outside its lock, on a launch thread of the job's
own: a slow constructor holds up neither the other jobs nor the admin calls."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from runtime.server.engine import ServerEngine
from runtime.server.manager import JobManager
from tests.unit.jobdata import components

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"


def gated_job(tmp: Path, name: str, gate: str) -> Path:
    folder = tmp / name
    shutil.copytree(HELLO, folder)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "name": name}))
    cfg_path = folder / "app" / "config" / "config_server.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["components"].append({"id": "slow", "path": "tests.unit.jobdata.components.GatedComponent",
                              "args": {"gate": gate}})
    cfg_path.write_text(json.dumps(cfg))
    return folder


@pytest.fixture
def manager(tmp_path):
    engine = ServerEngine(tmp_path / "server", monitor=False)
    manager = JobManager(engine, max_jobs=2, ready_timeout=60, schedule_interval=0.05).start()
    engine.register("site-1", {})
    engine.register("site-2", {})
    yield manager
    for gate in components.GATES.values():
        gate.release.set()
    components.GATES.clear()
    manager.stop(abort_running=True, timeout=10)
    engine.close()


def in_thread(fn, timeout: float = 10.0):
    """fn's value, or AssertionError if it is still blocked after `timeout` seconds."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(value=fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} blocked while a job's constructor ran"
    return box.get("value")


def test_a_slow_constructor_holds_up_neither_another_job_nor_admin_calls(manager, tmp_path):
    components.GATES["slow"] = gate = components.Gate()
    slow = manager.submit_folder(gated_job(tmp_path, "slow", "slow"), "t")
    assert gate.entered.wait(30)  # the scheduler builds the slow job now
    quick = manager.submit_folder(HELLO, "t")
    assert manager.runner_for(quick, timeout=30) is not None  # started meanwhile
    jobs = in_thread(manager.list_jobs)
    assert {j["job_id"] for j in jobs} == {slow, quick}
    job = in_thread(lambda: manager.abort_job(slow, "tester"))
    assert job["status"] == "ABORTED"
    gate.release.set()
    assert manager.settle(30)
    assert manager.runner_for(slow, timeout=0) is None  # aborted while built: never started
    assert slow not in manager.runners
    assert manager.store.get(slow).status == "ABORTED"


def test_a_job_being_built_holds_its_run_slot(manager, tmp_path):
    """Two slots: one job being built and one running leave a third waiting for a slot."""
    components.GATES["g"] = gate = components.Gate()
    manager.submit_folder(gated_job(tmp_path, "slow", "g"), "t")
    assert gate.entered.wait(30)
    running = manager.submit_folder(HELLO, "t")
    assert manager.runner_for(running, timeout=30) is not None
    third = manager.submit_folder(HELLO, "t")
    manager.wake()

    def waits_for_a_slot() -> bool:
        rec = manager.get_job(third)
        return rec["status"] == "WAITING" and "free run slot" in (rec.get("reason") or "")

    deadline = time.monotonic() + 30
    while not waits_for_a_slot() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the store: the scheduler's pass comes when it comes
    assert waits_for_a_slot(), manager.get_job(third)
    gate.release.set()
