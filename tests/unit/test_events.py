"""The server's event bus: numbered events reach every watcher in order, bounded queues drop the
oldest and say so, a watcher resumes from the history after a reconnect."""

from __future__ import annotations

import threading

from runtime.server.events import EventBus


def test_watchers_see_events_in_seq_order_whatever_the_publishers():
    """Several threads publish at once (sites, the scheduler, runners): a watcher must see the
    seqs strictly increasing, or a console resuming 'since seq' would skip events."""
    bus = EventBus(history=10)
    subs = [bus.subscribe(maxsize=100_000) for _ in range(3)]
    start = threading.Barrier(4)

    def publish(k: int) -> None:
        start.wait()
        for i in range(5000):
            bus.publish("log", n=i, k=k)

    threads = [threading.Thread(target=publish, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sub in subs:
        seqs = [ev["seq"] for ev in sub.drain()]
        assert len(seqs) == 20_000
        assert seqs == sorted(seqs), "events delivered out of seq order"


def test_a_slow_watcher_loses_the_oldest_and_is_told_how_many():
    bus = EventBus()
    sub = bus.subscribe(maxsize=3)
    for i in range(5):
        bus.publish("log", n=i)
    events = sub.drain()
    assert events[0]["type"] == "dropped" and events[0]["count"] == 2
    assert [ev["n"] for ev in events[1:]] == [2, 3, 4]


def test_resume_since_a_seq_replays_what_the_history_holds_but_not_transient_events():
    bus = EventBus(history=3)
    for i in range(5):
        bus.publish("job_status", n=i)
        bus.publish("heartbeat", n=i)
    sub = bus.subscribe(since=6)
    got = [(ev["type"], ev["n"]) for ev in sub.drain()]
    assert got == [("job_status", 3), ("job_status", 4)]  # seqs 7 and 9; heartbeats not kept
