"""The TUI's bookkeeping of what the server said: snapshots, then events applied in batches."""

from __future__ import annotations

from runtime.admin.session import Event

from flshell.tui.data import Snapshot
from flshell.tui.feed import EventQueue
from flshell.tui.state import FederationState

NOW = 1000.0


def state_with(jobs=(), sites=(), skew: float = 0.0) -> FederationState:
    st = FederationState(clock=lambda: NOW)
    st.load(Snapshot(list(jobs), list(sites)))
    return st


def apply(st: FederationState, *events: Event):
    q = EventQueue()
    for e in events:
        q.put(e)
    return st.apply(q.drain())


def test_job_events_create_progress_and_end_a_job():
    st = state_with()
    changes = apply(st,
                    Event(1, 900.0, "job_status", {"job_id": "abc", "name": "hello", "status": "SUBMITTED"}),
                    Event(2, 910.0, "job_status", {"job_id": "abc", "name": "hello", "status": "RUNNING"}),
                    Event(3, 911.0, "round_started", {"job_id": "abc", "round": 0, "total_rounds": 2, "sites": 2}))
    job = st.jobs["abc"]
    assert changes.jobs == {"abc"} and job["status"] == "RUNNING" and job["started_at"] == 910.0
    assert (job["current_round"], job["round_in_progress"]) == (0, True)
    changes = apply(st, Event(4, 915.0, "round_completed", {"job_id": "abc", "round": 0, "total_rounds": 2,
                                                            "seconds": 4.0, "sites_ok": ["s1", "s2"],
                                                            "metrics": {"acc": 0.5}}))
    assert changes.rounds[0][:2] == ("abc", 0) and st.round_records["abc"][0]["metrics"] == {"acc": 0.5}
    apply(st, Event(5, 920.0, "job_status", {"job_id": "abc", "status": "COMPLETED"}))
    assert job["status"] == "COMPLETED" and job["ended_at"] == 920.0 and job["current_round"] == 1
    apply(st, Event(6, 930.0, "job_deleted", {"job_id": "abc"}))
    assert "abc" not in st.jobs


def test_heartbeat_ages_use_the_local_clock_shifted_by_the_server_skew():
    # the server's clock runs 100 s behind ours: its last_seen + heartbeat_age is our NOW - 100
    st = state_with(sites=[{"name": "s1", "status": "CONNECTED", "last_seen": 895.0, "heartbeat_age": 5.0}])
    assert st.skew == 100.0 and st.age("s1") == 5.0
    changes = apply(st, Event(None, 898.0, "heartbeat", {"site": "s1", "info": {"host": {"cpu_percent": 7}}}))
    assert changes.beats == {"s1"} and st.age("s1") == 2.0
    assert st.sites["s1"]["info"]["host"] == {"cpu_percent": 7}


def test_site_status_events_and_a_beat_from_a_stale_site():
    st = state_with(sites=[{"name": "s1", "status": "CONNECTED", "last_seen": NOW, "heartbeat_age": 0.0}])
    apply(st, Event(1, NOW, "site_status", {"site": "s1", "status": "STALE"}))
    assert st.sites["s1"]["status"] == "STALE"
    apply(st, Event(None, NOW, "heartbeat", {"site": "s1", "info": {}}))
    assert st.sites["s1"]["status"] == "CONNECTED"


def test_tasks_per_site_and_job_and_the_jobs_of_a_site_that_does_not_heartbeat():
    st = state_with(jobs=[{"job_id": "j", "status": "RUNNING", "sites": ["s1"], "submitted_at": 1}],
                    sites=[{"name": "s1", "status": "CONNECTED", "last_seen": NOW, "heartbeat_age": 0.0,
                            "info": {}}])
    assert st.site_jobs("s1") == ["j"]  # no `jobs` in its info: the running jobs placed on it
    apply(st, Event(1, NOW, "task_assigned", {"job_id": "j", "site": "s1", "task": "train"}))
    assert st.tasks[("j", "s1")].ok is None
    apply(st, Event(2, NOW, "task_result", {"job_id": "j", "site": "s1", "task": "train", "ok": False,
                                            "seconds": 1.5}))
    assert (st.tasks[("j", "s1")].ok, st.tasks[("j", "s1")].seconds) == (False, 1.5)


def test_gpu_history_is_bounded():
    st = FederationState(clock=lambda: NOW, history=5)
    for u in range(8):
        apply(st, Event(None, NOW, "heartbeat", {"site": "s1", "info": {"gpus": [{"index": 1, "util_percent": u}]}}))
    assert list(st.gpu_util[("s1", 1)]) == [3.0, 4.0, 5.0, 6.0, 7.0]


def test_lost_events_are_counted_so_the_app_reloads():
    st = state_with()
    q = EventQueue(max_events=2)
    for n in range(4):
        q.put(Event(n, NOW, "job_status", {"job_id": "j", "status": "RUNNING"}))
    q.put(Event(None, NOW, "dropped", {"count": 7}))
    assert st.apply(q.drain()).dropped == 3 + 7


def beat(ts: float, util: float, site: str = "s1", index: int = 0) -> Event:
    return Event(None, ts, "heartbeat", {"site": site, "info": {"gpus": [{"index": index, "util_percent": util}]}})


def gpu_site(name: str = "s1") -> dict:
    return {"name": name, "status": "CONNECTED", "last_seen": NOW, "heartbeat_age": 0.0,
            "info": {"gpus": [{"index": 0, "util_percent": 40}]}}


def test_a_snapshot_seeds_the_gpu_history_and_beats_it_already_holds_are_not_doubled():
    st = FederationState(clock=lambda: NOW)
    served = {"s1": {0: {"t": [900.0, 905.0, 910.0], "util": [10, None, 30], "mem_used": [1, 2, 3]}}}
    changes = st.load(Snapshot([], [gpu_site()], {}, served))
    assert ("s1", 0) in changes.gpus
    assert list(st.gpu_util[("s1", 0)]) == [10.0, 30.0]  # a sample without a reading is left out
    # beats queued while the snapshot loaded: the server's history already has the one at 910 s;
    # two newer ones coalesce in the queue (one is kept as a trail) and are both added
    apply(st, beat(910.0, 30), beat(915.0, 50), beat(920.0, 60))
    assert list(st.gpu_util[("s1", 0)]) == [10.0, 30.0, 50.0, 60.0]
    assert list(st.gpu_times[("s1", 0)]) == [900.0, 910.0, 915.0, 920.0]


def test_a_reload_merges_the_servers_history_with_what_the_tui_heard_before_and_after_it():
    st = FederationState(clock=lambda: NOW, history=6)
    st.load(Snapshot([], [gpu_site()]))
    apply(st, beat(100.0, 1), beat(200.0, 2), beat(300.0, 3))  # heard before the server restarted
    apply(st, beat(420.0, 9))  # after the snapshot below was taken on the server
    served = {"s1": {0: {"t": [400.0, 410.0], "util": [7, 8], "mem_used": [0, 0]}}}
    st.load(Snapshot([], [gpu_site()], {}, served))
    assert list(st.gpu_times[("s1", 0)]) == [100.0, 200.0, 300.0, 400.0, 410.0, 420.0]
    assert list(st.gpu_util[("s1", 0)]) == [1.0, 2.0, 3.0, 7.0, 8.0, 9.0]
    served = {"s1": {0: {"t": [float(t) for t in range(500, 510)], "util": list(range(10)), "mem_used": []}}}
    st.load(Snapshot([], [gpu_site()], {}, served))
    assert list(st.gpu_util[("s1", 0)]) == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # still bounded
