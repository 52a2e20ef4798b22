"""Site liveness: a real engine, the in-process transport, and a monitor driven by hand.

The monitor under test is never started (except in the thread tests): each test calls
`check(now)` with made-up times, so nothing here depends on how fast the machine is.
With heartbeat interval 5 s: STALE after 15 s of silence, LOST after 50 s.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtime.model import FLModel
from runtime.server.engine import ServerEngine
from runtime.server.heartbeat import HeartbeatMonitor
from runtime.server.sites import SiteStatus
from runtime.workflows.tasks import TaskGroup, TaskGroupError
from runtime.transport import InProcTransport, JobEnd, JobState, TaskResult

CONNECTED, STALE, LOST, DISCONNECTED = (
    SiteStatus.CONNECTED, SiteStatus.STALE, SiteStatus.LOST, SiteStatus.DISCONNECTED)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path):
    eng = ServerEngine(tmp_path / "server", heartbeat_interval=5.0)
    yield eng
    eng.close()


@pytest.fixture
def t(engine):
    transport = InProcTransport(engine)
    yield transport
    transport.close()


@pytest.fixture
def mon(engine):
    return HeartbeatMonitor(engine, interval=5.0, clock=FakeClock())


@pytest.fixture
def statuses(engine):
    """The site_status events published from now on."""
    sub = engine.events.subscribe(types={"site_status"})
    yield sub
    sub.close()


def _status(engine, site):
    return engine.sites.get(site).status


def _wait_until(cond, what, limit=30.0):
    """Wait for another thread to reach a state (a bound against hanging, not a timing check)."""
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def _make(engine, mon, site, status, t0=0.0):
    """Bring registered `site` to `status` by silence; returns the monitor time reached."""
    mon.check(t0)
    if status == STALE:
        mon.check(t0 + 20)
    elif status == LOST:
        mon.check(t0 + 60)
    assert _status(engine, site) == status
    return t0 + (20 if status == STALE else 60 if status == LOST else 0)


# ---- defaults ---------------------------------------------------------------------------------


def test_defaults_follow_the_heartbeat_interval(engine):
    m = HeartbeatMonitor(engine)
    assert (m.interval, m.stale_after, m.lost_after, m.check_interval) == (5.0, 15.0, 50.0, 1.0)
    m = HeartbeatMonitor(engine, interval=0.3)
    assert (m.stale_after, m.lost_after) == pytest.approx((0.9, 3.0))
    assert m.check_interval == pytest.approx(0.3)  # min(1, stale_after / 3)
    with pytest.raises(ValueError):
        HeartbeatMonitor(engine, stale_after=20, lost_after=10)
    with pytest.raises(ValueError):
        HeartbeatMonitor(engine, interval=0)


# ---- transitions ------------------------------------------------------------------------------


def test_silent_site_goes_stale_then_lost_with_events_in_order(engine, t, mon, statuses):
    t.register("a", {})
    t.register("b", {})
    assert mon.check(0) == []
    assert mon.check(14.9) == []  # under stale_after
    assert _status(engine, "a") == CONNECTED
    t.heartbeat("b", {})  # b keeps beating
    assert mon.check(15.0) == [("a", STALE)]
    assert mon.check(49.9) == [("b", STALE)]  # b silent since 15 s
    assert mon.check(50.0) == [("a", LOST)]
    assert mon.check(500) == [("b", LOST)]  # from STALE; LOST is reported once
    assert mon.check(1000) == []

    events = [e for e in statuses.drain()]
    assert [(e["site"], e["status"]) for e in events] == [
        ("a", CONNECTED), ("b", CONNECTED),
        ("a", STALE), ("b", STALE), ("a", LOST), ("b", LOST),
    ]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert events[2]["previous"] == CONNECTED and events[2]["silent_for"] == 15.0
    assert events[4]["previous"] == STALE and events[4]["silent_for"] == 50.0
    assert engine.sites.status_counts() == {CONNECTED: 0, STALE: 0, LOST: 2, DISCONNECTED: 0}


def test_a_long_silence_goes_straight_to_lost(engine, t, mon, statuses):
    t.register("a", {})
    mon.check(0)
    statuses.drain()
    assert mon.check(3600) == [("a", LOST)]
    assert [e["status"] for e in statuses.drain()] == [LOST]


def test_a_site_in_a_long_poll_stays_connected(engine, t, mon):
    t.register("a", {})
    t.register("b", {})
    rec = engine.sites.get("a")
    got = []
    th = threading.Thread(target=lambda: got.append(t.poll("a", 300)))
    th.start()
    _wait_until(lambda: rec.polls_in_flight == 1, "a's poll started")
    mon.check(0)
    assert mon.check(20) == [("b", STALE)]
    assert mon.check(100) == [("b", LOST)]
    assert _status(engine, "a") == CONNECTED
    engine.send("a", JobEnd("job-1", "COMPLETED"))  # ends the poll
    th.join(30)
    assert not th.is_alive() and isinstance(got[0], JobEnd)
    assert rec.polls_in_flight == 0
    # from the end of its poll, a is an ordinary silent site again
    mon.check(200)
    assert mon.check(215) == [("a", STALE)]


def test_a_site_in_poll_many_stays_connected(engine, t, mon):
    for s in ("a", "b", "c"):
        t.register(s, {})
    recs = [engine.sites.get(s) for s in ("a", "b")]
    th = threading.Thread(target=lambda: t.poll_many({"a", "b", "ghost"}, 300))
    th.start()
    _wait_until(lambda: all(r.polls_in_flight == 1 for r in recs), "poll_many started")
    mon.check(0)
    assert mon.check(100) == [("c", LOST)]
    assert _status(engine, "a") == _status(engine, "b") == CONNECTED
    engine.send("b", JobEnd("job-1", "COMPLETED"))
    th.join(30)
    assert not th.is_alive()
    assert [r.polls_in_flight for r in recs] == [0, 0]


def _call(engine, t, how):
    if how == "register":
        t.register("a", {"again": True})
    elif how == "heartbeat":
        t.heartbeat("a", {})
    elif how == "poll":
        t.poll("a", 0)
    elif how == "poll_many":
        t.poll_many({"a"}, 0)
    elif how == "submit_result":
        task_id = engine.assign_task("job-1", "a", "train", FLModel(params={}), None,
                                     lambda r: None)
        t.submit_result(TaskResult(task_id, "job-1", "a", True, FLModel(params={})))
    elif how == "report_job":
        t.report_job("a", "job-1", JobState.READY)
    elif how == "log_metrics":
        t.log_metrics("a", "job-1", [{"tag": "loss", "value": 1.0, "step": 0, "wall_time": 0}])
    else:  # pragma: no cover
        raise AssertionError(how)


CALLS = ["register", "heartbeat", "poll", "poll_many", "submit_result", "report_job",
         "log_metrics"]


@pytest.mark.parametrize("how", CALLS)
def test_any_call_revives_a_stale_site(engine, t, mon, statuses, how):
    t.register("a", {})
    now = _make(engine, mon, "a", STALE)
    statuses.drain()
    _call(engine, t, how)
    assert _status(engine, "a") == CONNECTED
    (ev,) = statuses.drain()
    assert ev["status"] == CONNECTED and ev.get("rejoined") is None
    if how != "register":
        assert ev["previous"] == STALE
    # it is watched afresh from the first look after its call: silent since now + 1
    assert mon.check(now + 1) == []
    assert mon.check(now + 15.9) == []
    assert mon.check(now + 16) == [("a", STALE)]


@pytest.mark.parametrize("how", CALLS)
def test_any_call_refreshes_last_seen(engine, t, how):
    t.register("a", {})
    rec = engine.sites.get("a")
    rec.last_seen -= 100
    seq = rec.seen_seq
    _call(engine, t, how)
    assert rec.seen_seq != seq
    assert time.time() - rec.last_seen < 50


def test_a_refused_result_still_shows_the_site_alive(engine, t, mon):
    t.register("a", {})
    _make(engine, mon, "a", STALE)
    with pytest.raises(Exception, match="not expected"):
        t.submit_result(TaskResult("nope", "job-1", "a", True, FLModel(params={})))
    assert _status(engine, "a") == CONNECTED


# ---- LOST gives up the site's tasks -----------------------------------------------------------


def _group(engine, t, min_responses):
    """A group over sites `good` (answers) and `gone` (never does), waited on in a thread."""
    t.register("good", {})
    t.register("gone", {})
    g = TaskGroup(engine, "job-1", "train", FLModel(params={"w": np.zeros(2)}), ["good", "gone"])
    g.dispatch()
    box: dict = {}

    def waiter():
        try:
            box["outcome"] = g.wait(min_responses)
        except TaskGroupError as e:
            box["error"] = e

    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    msg = t.poll("good", 0)
    t.submit_result(TaskResult(msg.task_id, "job-1", "good", True,
                               FLModel(params={"w": np.ones(2)})))
    return g, th, box


def test_lost_site_fails_its_task_and_the_group_proceeds(engine, t, mon):
    g, th, box = _group(engine, t, min_responses=1)
    mon.check(0)
    mon.check(20)
    t.heartbeat("good", {})
    assert th.is_alive()  # STALE is still counted: the group keeps waiting for it
    assert mon.check(50) == [("gone", LOST)]
    th.join(30)
    assert not th.is_alive(), "the group still waits for a lost site"
    out = box["outcome"]
    assert out.ok_sites == ["good"]
    assert out.failed == {"gone": "gone lost: no heartbeat for 50s"}
    assert out.timed_out == [] and out.cancelled == []
    assert _status(engine, "good") == CONNECTED


def test_lost_site_fails_the_group_naming_it(engine, t, mon):
    g, th, box = _group(engine, t, min_responses=2)
    mon.check(0)
    t.heartbeat("good", {})
    mon.check(60)
    th.join(30)
    assert not th.is_alive(), "the group still waits for a lost site"
    err = box["error"]
    assert err.sites == ["gone"]
    assert "1 of 2 sites succeeded, 2 required" in str(err) and "failed: gone" in str(err)
    assert "gone lost: no heartbeat for 60s" in g.outcome.failed["gone"]


def test_lost_site_drops_assignments_it_never_picked_up(engine, t, mon):
    t.register("a", {})
    results = []
    engine.assign_task("job-1", "a", "train", FLModel(params={}), None, results.append)
    engine.send("a", JobEnd("job-0", "COMPLETED"))
    _make(engine, mon, "a", LOST)
    assert len(results) == 1 and not results[0].ok and "a lost" in results[0].error
    # it comes back: the failed task is not handed out again, other messages still are
    assert isinstance(t.poll("a", 0), JobEnd)
    assert t.poll("a", 0) is None


# ---- rejoining --------------------------------------------------------------------------------


def test_rejoin_after_lost_keeps_one_entry(engine, t, mon, statuses):
    t.register("a", {"version": 1, "cpu": 4})
    _make(engine, mon, "a", LOST)
    before = engine.sites.get("a")
    statuses.drain()
    t.register("a", {"version": 2})
    assert engine.sites.names(None) == ["a"]
    assert engine.sites.get("a") is before
    assert _status(engine, "a") == CONNECTED
    # what it says now replaces what it said before (a restarted site may run differently)
    assert engine.sites.get("a").info == {"version": 2}
    (ev,) = statuses.drain()
    assert (ev["site"], ev["status"], ev["new"], ev["rejoined"]) == ("a", CONNECTED, False, True)
    assert engine.sites.status_counts()[CONNECTED] == 1
    # and the monitor watches it afresh
    assert mon.check(100) == []
    assert mon.check(115) == [("a", STALE)]


def test_a_lost_site_that_simply_calls_again_rejoins(engine, t, mon, statuses):
    t.register("a", {})
    _make(engine, mon, "a", LOST)
    statuses.drain()
    t.heartbeat("a", {"cpu_percent": 3})
    (ev,) = statuses.drain()
    assert (ev["status"], ev["previous"], ev["rejoined"]) == (CONNECTED, LOST, True)


def test_plain_registers_are_not_rejoins(engine, t, statuses):
    t.register("a", {})
    t.register("a", {})
    first, second = statuses.drain()
    assert first["new"] is True and second["new"] is False
    assert "rejoined" not in first and "rejoined" not in second


# ---- goodbye ----------------------------------------------------------------------------------


def test_goodbye_sites_are_not_monitored(engine, t, mon, statuses):
    t.register("a", {})
    t.register("b", {})
    mon.check(0)
    t.goodbye("a")
    assert mon.check(1000) == [("b", LOST)]
    assert _status(engine, "a") == DISCONNECTED
    assert [(e["site"], e["status"]) for e in statuses.drain()] == [
        ("a", CONNECTED), ("b", CONNECTED), ("a", DISCONNECTED), ("b", LOST)]
    # a late poll from a departed site does not bring it back either
    t.poll("a", 0)
    assert _status(engine, "a") == DISCONNECTED
    assert mon.check(5000) == []


def test_a_site_that_said_goodbye_and_registers_again_is_watched_again(engine, t, mon):
    t.register("a", {})
    t.goodbye("a")
    mon.check(0)
    t.register("a", {})
    mon.check(10)
    assert mon.check(25) == [("a", STALE)]


# ---- registry views ---------------------------------------------------------------------------


def test_registry_counts_and_snapshot(engine, t, mon):
    for s in ("c", "a", "b", "d"):
        t.register(s, {"n": s})
    mon.check(0)
    t.heartbeat("b", {})
    t.heartbeat("c", {})
    mon.check(20)  # a and d STALE
    t.heartbeat("b", {})
    mon.check(36)  # c STALE (silent since 20)
    t.goodbye("b")
    mon.check(60)  # a, d LOST
    t.heartbeat("d", {})  # d back
    assert engine.sites.status_counts() == {CONNECTED: 1, STALE: 1, LOST: 1, DISCONNECTED: 1}
    snap = engine.sites.snapshot()
    assert [(s["name"], s["status"]) for s in snap] == [
        ("a", LOST), ("b", DISCONNECTED), ("c", STALE), ("d", CONNECTED)]
    assert snap[0]["info"] == {"n": "a"} and snap[0]["polling"] is False
    assert engine.sites.names() == ["d"]
    assert sorted(engine.sites.names(SiteStatus.LIVE)) == ["c", "d"]
    assert len(engine.sites.names(None)) == 4


# ---- the thread -------------------------------------------------------------------------------


def _monitor_threads():
    return [th for th in threading.enumerate() if th.name == "flshell-heartbeat-monitor"]


def test_monitor_thread_starts_and_stops(engine, t, statuses):
    before = set(threading.enumerate())
    clock = FakeClock(0.0)
    m = HeartbeatMonitor(engine, interval=5.0, check_interval=0.01, clock=clock).start()
    assert m.running and len(_monitor_threads()) == 1
    t.register("a", {})
    assert statuses.get(30)["status"] == CONNECTED
    _wait_until(lambda: "a" in m._seen, "the thread looked at a")
    clock.now = 60.0  # the thread, not this test, notices
    ev = statuses.get(30)
    assert ev is not None and (ev["site"], ev["status"]) == ("a", LOST)
    m.stop()
    m.stop()  # idempotent
    assert not m.running
    assert _monitor_threads() == []
    assert set(threading.enumerate()) <= before


def test_engine_runs_the_monitor_only_when_asked(tmp_path):
    plain = ServerEngine(tmp_path / "plain")
    assert plain.monitor is None and _monitor_threads() == []
    plain.close()
    eng = ServerEngine(tmp_path / "mon", heartbeat_interval=2.0, monitor=True, lost_after=30)
    try:
        assert eng.monitor is not None and eng.monitor.running
        assert (eng.monitor.stale_after, eng.monitor.lost_after) == (6.0, 30)
        assert len(_monitor_threads()) == 1
    finally:
        eng.close()
    assert not eng.monitor.running
    assert _monitor_threads() == []
    eng.close()  # idempotent


def test_status_changes_and_their_events_agree_under_racing_heartbeats_and_goodbyes(engine, statuses):
    """A heartbeat racing a goodbye: whatever order they land in, the last site_status event
    a watcher sees is the site's status (a change and its event happen under one lock)."""
    engine.register("site-1", {})
    for _ in range(200):
        go = threading.Barrier(2)

        def beat() -> None:
            go.wait()
            engine.heartbeat("site-1", {})

        t = threading.Thread(target=beat)
        t.start()
        go.wait()
        engine.goodbye("site-1")
        t.join()
        last = [ev for ev in statuses.drain() if ev["type"] == "site_status"][-1]
        assert last["status"] == _status(engine, "site-1")
        if last["status"] == SiteStatus.CONNECTED:  # back from a goodbye: it says from what
            assert last.get("previous") == SiteStatus.DISCONNECTED
