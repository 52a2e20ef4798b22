"""The transport contract: what any SiteTransport must do, tested against a real engine."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtime.model import FLModel, ParamsType
from runtime.transport import (
    JobEnd,
    JobStart,
    JobState,
    NotRegistered,
    TaskAssignment,
    TaskResult,
    TransportError,
)


def _assign(engine, site="site-1", model=None, results=None):
    results = results if results is not None else []
    model = model or FLModel(params={"w": np.arange(6.0).reshape(2, 3)}, meta={"k": 1})
    task_id = engine.assign_task("job-1", site, "train", model, None, results.append)
    return task_id, results


def test_register_then_poll_returns_none_when_idle(wired):
    engine, t = wired
    reply = t.register("site-1", {"cpu": 2})
    assert reply["heartbeat_interval"] > 0
    t0 = time.monotonic()
    assert t.poll("site-1", 0.2) is None
    assert time.monotonic() - t0 >= 0.15
    assert engine.sites.get("site-1").info["cpu"] == 2


def test_unregistered_site_is_refused(wired):
    """A typed refusal, whatever the transport: a site tells 'register again' from any other
    error by its type, never by its text."""
    _, t = wired
    with pytest.raises(NotRegistered, match="not registered"):
        t.poll("ghost", 0.01)
    with pytest.raises(NotRegistered, match="not registered"):
        t.heartbeat("ghost", {})
    with pytest.raises(TransportError) as other:
        t.register("", {})
    assert not isinstance(other.value, NotRegistered)


def test_messages_arrive_in_order(wired):
    engine, t = wired
    t.register("site-1", {})
    engine.start_job_on("site-1", JobStart("job-1", "j", "app"))
    task_id, _ = _assign(engine)
    engine.end_job_on("site-1", "job-2", "COMPLETED")
    first, second, third = (t.poll("site-1", 1) for _ in range(3))
    assert isinstance(first, JobStart) and first.app_name == "app"
    assert isinstance(second, TaskAssignment) and second.task_id == task_id
    assert isinstance(third, JobEnd) and third.status == "COMPLETED"


def test_poll_wakes_when_a_task_is_queued(wired):
    engine, t = wired
    t.register("site-1", {})
    got = []
    th = threading.Thread(target=lambda: got.append(t.poll("site-1", 60)))
    th.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    _assign(engine)
    th.join(60)
    assert isinstance(got[0], TaskAssignment)
    assert time.monotonic() - t0 < 30  # woken by the task, not by the 60 s poll timeout


def test_task_model_round_trips_and_is_detached(wired):
    engine, t = wired
    t.register("site-1", {})
    original = np.arange(6.0).reshape(2, 3)
    model = FLModel(params={"w": original}, params_type=ParamsType.DIFF, metrics={"a": 0.5},
                    meta={"nested": {"x": [1, 2]}}, current_round=3, total_rounds=7)
    _assign(engine, model=model)
    msg = t.poll("site-1", 1)
    got = msg.take_model()
    np.testing.assert_array_equal(got.params["w"], original)
    assert got.params_type == ParamsType.DIFF
    assert (got.metrics, got.meta, got.current_round, got.total_rounds) == (
        {"a": 0.5}, {"nested": {"x": [1, 2]}}, 3, 7)
    got.params["w"] += 100  # the site's copy is its own
    got.meta["nested"]["x"].append(3)
    np.testing.assert_array_equal(original, np.arange(6.0).reshape(2, 3))
    assert model.meta == {"nested": {"x": [1, 2]}}


def test_result_is_matched_by_task_id(wired):
    engine, t = wired
    t.register("site-1", {})
    task_id, results = _assign(engine)
    msg = t.poll("site-1", 1)
    sent = np.ones(3)
    t.submit_result(TaskResult(msg.task_id, "job-1", "site-1", True,
                               FLModel(params={"w": sent}, metrics={"loss": 0.25})))
    assert len(results) == 1 and results[0].task_id == task_id
    np.testing.assert_array_equal(results[0].model.params["w"], sent)
    sent += 1  # the server's copy is its own
    assert results[0].model.params["w"][0] == 1.0
    assert results[0].model.metrics == {"loss": 0.25}


def test_failed_result_carries_the_error(wired):
    engine, t = wired
    t.register("site-1", {})
    _, results = _assign(engine)
    msg = t.poll("site-1", 1)
    t.submit_result(TaskResult(msg.task_id, "job-1", "site-1", False, None, "Traceback...\nValueError: boom"))
    assert results[0].ok is False and "boom" in results[0].error


def test_unknown_or_duplicate_result_is_refused(wired):
    engine, t = wired
    t.register("site-1", {})
    t.register("site-2", {})
    _assign(engine)
    msg = t.poll("site-1", 1)
    with pytest.raises(TransportError, match="not expected"):
        t.submit_result(TaskResult("nope", "job-1", "site-1", True, FLModel(params={})))
    with pytest.raises(TransportError, match="assigned to site-1"):
        t.submit_result(TaskResult(msg.task_id, "job-1", "site-2", True, FLModel(params={})))
    t.submit_result(TaskResult(msg.task_id, "job-1", "site-1", True, FLModel(params={})))
    with pytest.raises(TransportError, match="not expected"):
        t.submit_result(TaskResult(msg.task_id, "job-1", "site-1", True, FLModel(params={})))


def test_cancelled_task_result_is_refused(wired):
    engine, t = wired
    t.register("site-1", {})
    task_id, results = _assign(engine)
    t.poll("site-1", 1)
    engine.cancel_task(task_id)
    with pytest.raises(TransportError):
        t.submit_result(TaskResult(task_id, "job-1", "site-1", True, FLModel(params={})))
    assert results == []


def test_non_json_metadata_fails_the_task_not_the_server(wired):
    engine, t = wired
    t.register("site-1", {})
    _, results = _assign(engine)
    msg = t.poll("site-1", 1)
    t.submit_result(TaskResult(msg.task_id, "job-1", "site-1", True,
                               FLModel(params={}, meta={"bad": {1, 2}})))
    assert results[0].ok is False
    assert "meta" in results[0].error


def test_job_reports_reach_the_listener(wired):
    engine, t = wired
    t.register("site-1", {})
    seen = []
    engine.add_job_listener("job-1", lambda site, state, detail: seen.append((site, state, detail)))
    t.report_job("site-1", "job-1", JobState.READY)
    t.report_job("site-1", "job-1", JobState.FAILED, "no script")
    assert seen == [("site-1", "ready", None), ("site-1", "failed", "no script")]


def test_goodbye_fails_pending_tasks(wired):
    engine, t = wired
    t.register("site-1", {})
    _, results = _assign(engine)
    t.goodbye("site-1")
    assert results and results[0].ok is False and "disconnected" in results[0].error
    assert engine.sites.get("site-1").status == "DISCONNECTED"


def test_heartbeat_updates_the_registry(wired):
    engine, t = wired
    t.register("site-1", {})
    sub = engine.events.subscribe(types={"heartbeat"})
    t.heartbeat("site-1", {"cpu_percent": 12.5})
    assert engine.sites.get("site-1").info["cpu_percent"] == 12.5
    ev = sub.get(1)
    assert ev["type"] == "heartbeat" and ev["site"] == "site-1"


def test_many_sites_poll_concurrently(wired):
    engine, t = wired
    sites = [f"site-{i}" for i in range(50)]
    for s in sites:
        t.register(s, {})
    got: dict[str, str] = {}
    lock = threading.Lock()

    def worker(site):
        msg = t.poll(site, 5)
        with lock:
            got[site] = msg.task_id

    threads = [threading.Thread(target=worker, args=(s,)) for s in sites]
    for th in threads:
        th.start()
    ids = {s: _assign(engine, site=s)[0] for s in sites}
    for th in threads:
        th.join(5)
    assert got == ids


def test_poll_many_returns_each_sites_messages_in_order(wired):
    engine, t = wired
    for s in ("a", "b", "c"):
        t.register(s, {})
    engine.start_job_on("a", JobStart("job-1", "j", "app"))
    _assign(engine, site="a")
    _assign(engine, site="b")
    got = t.poll_many({"a", "b"}, 1)
    assert [(s, type(m).__name__) for s, m in got if s == "a"] == [
        ("a", "JobStart"), ("a", "TaskAssignment")]
    assert [s for s, _ in got].count("b") == 1
    t0 = time.monotonic()
    assert t.poll_many({"a", "b"}, 0.2) == []  # c's queue is not theirs, and theirs is empty
    assert time.monotonic() - t0 >= 0.15


def test_polling_a_closed_server_fails_fast(wired):
    engine, t = wired
    t.register("site-1", {})
    engine.close()
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="shutting down") as closing:
        t.poll("site-1", 60)
    assert closing.value.retryable  # the next server may answer the same call
    with pytest.raises(TransportError, match="shutting down"):
        t.poll_many({"site-1"}, 60)
    assert time.monotonic() - t0 < 30  # not after the 60 s poll timeouts


def test_metric_records_reach_the_jobs_sink(wired):
    engine, t = wired
    t.register("site-1", {})
    got = []
    engine.add_metric_sink("job-1", lambda site, recs: got.append((site, recs)))
    recs = [{"tag": "loss", "value": 0.5, "step": 3, "wall_time": 1.0}]
    t.log_metrics("site-1", "job-1", recs)
    t.log_metrics("site-1", "job-2", recs)  # no sink: dropped quietly
    assert got == [("site-1", recs)]
    with pytest.raises(TransportError):
        t.log_metrics("site-1", "job-1", [{"tag": {1, 2}}])


def test_job_folder_is_offered_only_to_its_sites(wired):
    engine, t = wired
    t.register("site-1", {})
    t.register("site-2", {})
    engine.add_job_archive("job-1", ["site-1"], lambda: b"PK-not-really-a-zip" * 100000)
    assert t.get_job("site-1", "job-1") == b"PK-not-really-a-zip" * 100000  # 1.9 MB, chunked
    with pytest.raises(TransportError, match="not deployed to site-2"):
        t.get_job("site-2", "job-1")
    with pytest.raises(TransportError, match="not deployed"):
        t.get_job("site-1", "job-9")


def test_a_job_folder_is_made_once_and_let_go_of_once_every_site_has_it(wired):
    engine, t = wired
    for s in ("site-1", "site-2", "site-3"):
        t.register(s, {})
    made = []

    def make() -> bytes:
        made.append(1)
        return b"PK" + bytes([len(made)]) * 1000

    engine.add_job_archive("job-1", ["site-1", "site-2", "site-3"], make)
    assert t.get_job("site-1", "job-1") == t.get_job("site-2", "job-1") == b"PK" + b"\x01" * 1000
    assert len(made) == 1  # made when the first asked, kept for the others
    t.get_job("site-3", "job-1")
    assert len(made) == 1
    # every site has it now: the server holds it no longer; a site that asks again (rejoining)
    # gets it made anew
    assert t.get_job("site-2", "job-1") == b"PK" + b"\x02" * 1000 and len(made) == 2


def test_arrays_in_a_tasks_meta_arrive_as_arrays_of_their_own(wired):
    """SCAFFOLD's control variates travel in meta (NVFlare's scaffold_c_global): a dict shaped
    like params. They come as arrays, bit for bit, and the site's copy is its own."""
    engine, t = wired
    t.register("site-1", {})
    c = {"w": np.linspace(0, 1, 6).reshape(2, 3), "b": np.array([3], dtype=np.float32)}
    model = FLModel(params={"w": np.zeros((2, 3))}, meta={"scaffold_c_global": c, "fedprox_mu": 0.5})
    _assign(engine, model=model)
    msg = t.poll("site-1", 5)
    got = msg.take_model()
    assert got.meta["fedprox_mu"] == 0.5
    assert set(got.meta["scaffold_c_global"]) == {"w", "b"}
    for k, v in c.items():
        assert got.meta["scaffold_c_global"][k].dtype == v.dtype
        np.testing.assert_array_equal(got.meta["scaffold_c_global"][k], v)
    got.meta["scaffold_c_global"]["w"] += 1  # the site's own copy
    assert c["w"][0, 0] == 0.0
