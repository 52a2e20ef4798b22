"""The live feed without a UI: the bounded, coalescing EventQueue, and LiveFeed's connect /
reconnect loop over a ScriptedSource (watch first, then load; backoff; resume after the last seq)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from runtime.admin.session import Event

from flshell.tui.data import ScriptedSource, Snapshot
from flshell.tui.feed import EventQueue, LiveFeed
from flshell.tui.messages import Connected, ConnectionLost


def beat(site: str, util: float | None = None) -> Event:
    info = {"gpus": [{"index": 0, "util_percent": util}]} if util is not None else {}
    return Event(None, 0.0, "heartbeat", {"site": site, "info": info})


def test_heartbeats_coalesce_per_site_so_the_queue_holds_at_most_one_per_site():
    q = EventQueue()
    for r in range(10):
        for i in range(1000):
            q.put(beat(f"site-{i}", float(r)))
    assert len(q) == 1000 and q.high_water == 1000
    assert q.received == 10_000 and q.coalesced == 9000
    batch = q.drain()
    assert len(batch.heartbeats) == 1000 and not batch.events and not batch.lost
    assert batch.heartbeats["site-7"].data["info"]["gpus"][0]["util_percent"] == 9.0
    assert [s[0][1] for s in batch.trails["site-7"]] == [float(r) for r in range(9)]  # GPU samples kept
    assert len(q) == 0 and not q.drain()


def test_other_events_keep_their_order_up_to_the_bound_then_the_oldest_are_counted_lost():
    q = EventQueue(max_events=5)
    for n in range(8):
        q.put(Event(n, 0.0, "job_status", {"job_id": "j", "status": str(n)}))
    batch = q.drain()
    assert [e.seq for e in batch.events] == [3, 4, 5, 6, 7] and batch.lost == 3
    assert q.high_water == 5


def collect() -> tuple[list, threading.Condition, Callable[[Any], None]]:
    got: list = []
    cond = threading.Condition()

    def post(message) -> None:
        with cond:
            got.append(message)
            cond.notify_all()
    return got, cond, post


def wait(cond: threading.Condition, predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    with cond:
        while not predicate():
            left = deadline - time.monotonic()
            assert left > 0, "timed out"
            cond.wait(left)


def test_the_feed_connects_queues_events_reconnects_with_a_counter_and_resumes_after_the_last_seq():
    src = ScriptedSource([{"job_id": "j1", "name": "a", "status": "RUNNING"}], [],
                         events=[Event(5, 0.0, "job_status", {"job_id": "j1", "status": "RUNNING"})])
    q = EventQueue()
    got, cond, post = collect()
    feed = LiveFeed(src, q, post, base_delay=0.01, max_delay=0.02)
    thread = threading.Thread(target=feed.run, daemon=True)
    thread.start()
    try:
        wait(cond, lambda: any(isinstance(m, Connected) for m in got))
        first = next(m for m in got if isinstance(m, Connected))
        assert isinstance(first.snapshot, Snapshot) and first.attempts == 0
        deadline = time.monotonic() + 5
        while q.received < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.seq for e in q.drain().events] == [5]  # the replayed history
        src.disconnect()
        wait(cond, lambda: sum(isinstance(m, ConnectionLost) for m in got) >= 3)
        lost = [m for m in got if isinstance(m, ConnectionLost)]
        assert [m.attempt for m in lost[:3]] == [1, 2, 3]
        assert "unreachable" in lost[0].error
        src.reconnect()
        wait(cond, lambda: sum(isinstance(m, Connected) for m in got) == 2)
        again = [m for m in got if isinstance(m, Connected)][-1]
        assert again.attempts >= 3
        time.sleep(0.05)
        assert not q.drain().events, "nothing replayed twice: the watch resumed after seq 5"
        src.push(Event(6, 0.0, "job_status", {"job_id": "j1", "status": "COMPLETED"}))
        deadline = time.monotonic() + 5
        while q.received < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e.seq for e in q.drain().events] == [6]
    finally:
        feed.stop()
        thread.join(5)
    assert not thread.is_alive(), "stop() ends the feed, even in the middle of a watch"


def test_backoff_grows_and_is_capped():
    feed = LiveFeed(ScriptedSource(), EventQueue(), lambda m: None, base_delay=0.5, max_delay=5.0)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (30, 5.0)):
        delays = [feed.delay(attempt) for _ in range(20)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
