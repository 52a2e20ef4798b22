"""Task groups on a real engine: results matched as they arrive, shortfalls named, timeouts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtime.model import FLModel
from runtime.server.engine import ServerEngine
from runtime.workflows.tasks import TaskGroup, TaskGroupError
from runtime.transport import InProcTransport, TaskAssignment, TaskResult, TransportError


def _site(transport, name, behaviour):
    """A minimal site loop: behaviour(model) -> FLModel | Exception | None (None: never answer)."""
    transport.register(name, {})

    def loop():
        while True:
            try:
                msg = transport.poll(name, 0.2)
            except TransportError:  # the engine closed: this site is done
                return
            if msg is None:
                continue
            if not isinstance(msg, TaskAssignment):
                continue
            if msg.task_name == "stop":
                return
            out = behaviour(msg.take_model())
            if out is None:
                continue
            ok = isinstance(out, FLModel)
            try:
                transport.submit_result(TaskResult(msg.task_id, msg.job_id, name, ok,
                                                   out if ok else None, None if ok else str(out)))
            except TransportError:
                pass  # the group stopped waiting for it: a late result is refused

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return th


@pytest.fixture
def engine(tmp_path):
    eng = ServerEngine(tmp_path)
    yield eng
    eng.close()


def test_all_results_collected_and_callback_sees_each(engine):
    t = InProcTransport(engine)
    sites = [f"s{i}" for i in range(5)]
    for s in sites:
        _site(t, s, lambda m: FLModel(params={"w": m.params["w"] + 1}))
    seen = []
    g = TaskGroup(engine, "j", "train", FLModel(params={"w": np.zeros(2)}), sites,
                  callback=lambda r: seen.append(r.site))
    g.dispatch()
    out = g.wait(min_responses=5)
    assert sorted(seen) == sites and sorted(out.ok_sites) == sites and out.results == []


def test_shortfall_fails_early_naming_the_sites(engine):
    t = InProcTransport(engine)
    _site(t, "good", lambda m: FLModel(params={}))
    _site(t, "bad1", lambda m: RuntimeError("boom 1"))
    _site(t, "bad2", lambda m: RuntimeError("boom 2"))
    _site(t, "silent", lambda m: None)  # never answers: must not be waited for
    g = TaskGroup(engine, "j", "train", FLModel(params={}), ["good", "bad1", "bad2", "silent"])
    g.dispatch()
    with pytest.raises(TaskGroupError) as e:  # no timeout: waiting for "silent" would hang
        g.wait(min_responses=3)
    assert e.value.sites == ["bad1", "bad2"]
    # two failures make 3 successes unreachable: the group may give up before "good" answers
    assert f"{len(g.outcome.ok_sites)} of 4 sites succeeded, 3 required" in str(e.value)
    assert g.outcome.ok_sites in ([], ["good"])
    assert g.outcome.failed["bad1"] == "boom 1"
    assert "silent" in g.outcome.cancelled


def test_timeout_names_silent_sites(engine):
    t = InProcTransport(engine)
    _site(t, "fast", lambda m: FLModel(params={}))
    _site(t, "slow", lambda m: None)
    g = TaskGroup(engine, "j", "train", FLModel(params={}), ["fast", "slow"], timeout=0.5)
    g.dispatch()
    out = g.wait(min_responses=1)
    assert out.ok_sites == ["fast"] and out.timed_out == ["slow"]
    with pytest.raises(TaskGroupError, match="timed out after 0.3s: slow"):
        g2 = TaskGroup(engine, "j", "train", FLModel(params={}), ["slow"], timeout=0.3)
        g2.dispatch()
        g2.wait(min_responses=1)


def test_abort_stops_waiting(engine):
    t = InProcTransport(engine)
    _site(t, "slow", lambda m: None)
    abort = threading.Event()
    g = TaskGroup(engine, "j", "train", FLModel(params={}), ["slow"])
    g.dispatch()
    threading.Timer(0.2, abort.set).start()
    out = g.wait(min_responses=1, abort=abort)
    assert out.ok_sites == [] and out.cancelled == ["slow"]


def test_callback_error_fails_the_group(engine):
    t = InProcTransport(engine)
    _site(t, "a", lambda m: FLModel(params={}))

    def bad(_):
        raise ValueError("cannot aggregate")

    g = TaskGroup(engine, "j", "train", FLModel(params={}), ["a"], callback=bad)
    g.dispatch()
    with pytest.raises(TaskGroupError, match="cannot aggregate"):
        g.wait(min_responses=1)


HUNG = threading.Event()  # never set: a host that froze with the task


def _two_answer_one_hangs(engine):
    t = InProcTransport(engine)
    for s in ("s1", "s2"):
        _site(t, s, lambda m: FLModel(params={"w": m.params["w"] + 1}))
    _site(t, "s3", lambda m: HUNG.wait(60) and None)  # takes the task, then neither answers nor polls
    return TaskGroup(engine, "job", "train", FLModel(params={"w": np.zeros(2)}),
                     ["s1", "s2", "s3"], timeout=30)


def _when_two_answered(group):
    deadline = time.monotonic() + 10
    while len(group.outcome.ok_sites) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_round_with_enough_results_stops_waiting_for_a_stale_site(engine):
    group = _two_answer_one_hangs(engine)
    group.dispatch()
    _when_two_answered(group)
    rec = engine.sites.get("s3")
    deadline = time.monotonic() + 5
    while not engine.mark_site_silent("s3", "STALE", 15.0, rec.seen_seq):  # as the monitor would
        assert time.monotonic() < deadline, "s3 should be out of its poll, hung in its task"
        time.sleep(0.01)
    start = time.monotonic()
    out = group.wait(2)
    assert time.monotonic() - start < 5  # not the group's 30 s timeout
    assert sorted(out.ok_sites) == ["s1", "s2"] and "s3 is STALE" in out.failed["s3"]
    assert "enough for the round" in out.failed["s3"]


def test_a_stale_site_is_waited_for_while_it_is_needed(engine):
    group = _two_answer_one_hangs(engine)
    group.timeout = 1.0
    group.dispatch()
    _when_two_answered(group)
    with pytest.raises(TaskGroupError, match="2 of 3 sites succeeded, 3 required"):
        group.wait(3)


def test_wait_after_min_ends_the_round_after_that_long(engine):
    group = _two_answer_one_hangs(engine)
    group.dispatch()
    _when_two_answered(group)
    start = time.monotonic()
    out = group.wait(2, wait_after_min=0.3)
    assert 0.25 <= time.monotonic() - start < 5
    assert "no result 0.3s after 2 sites" in out.failed["s3"]


def test_a_connected_silent_site_is_waited_for_until_the_timeout(engine):
    group = _two_answer_one_hangs(engine)
    group.timeout = 1.0
    group.dispatch()
    _when_two_answered(group)
    out = group.wait(2)
    assert out.timed_out == ["s3"] and out.seconds >= 1.0
