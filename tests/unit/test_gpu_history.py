"""The server's short GPU history (runtime.server.gpu_history): bounded per GPU, per site and in
sites, in time order, forgetting removed sites and GPUs a site no longer reports; fed from a real
EventBus."""

from __future__ import annotations

import math
import tracemalloc

from runtime.server.events import EventBus
from runtime.server.gpu_history import GpuHistory, GpuRing


def gpus(*utils, mem: int = 1024) -> list[dict]:
    return [{"index": i, "util_percent": u, "mem_used": mem} for i, u in enumerate(utils)]


def test_a_gpu_keeps_its_last_samples_oldest_first():
    h = GpuHistory(capacity=5)
    for n in range(8):
        h.record("s1", 100.0 + n, gpus(10 * n))
    sites, n = h.snapshot()
    series = sites["s1"]["0"]
    assert n == 5 and series["t"] == [103.0, 104.0, 105.0, 106.0, 107.0]
    assert series["util"] == [30.0, 40.0, 50.0, 60.0, 70.0] and series["mem_used"] == [1024] * 5
    assert h.snapshot(last=2) == ({"s1": {"0": {"t": [106.0, 107.0], "util": [60.0, 70.0],
                                                "mem_used": [1024, 1024]}}}, 2)


def test_an_answer_for_many_gpus_holds_fewer_samples_of_each_to_stay_one_message():
    h = GpuHistory(capacity=10)
    for n in range(10):
        for site in ("a", "b", "c"):
            h.record(site, float(n), gpus(n, n))
    sites, n = h.snapshot(max_samples=30)  # 6 GPUs: 5 samples of each
    assert n == 5 and {len(g["t"]) for s in sites.values() for g in s.values()} == {5}
    assert sites["a"]["1"]["util"] == [5.0, 6.0, 7.0, 8.0, 9.0]  # the latest
    assert h.snapshot("b", max_samples=30)[1] == 10  # one site's 2 GPUs: all of them
    assert h.snapshot(max_samples=1)[1] == 1


def test_a_late_sample_takes_its_place_by_time_and_unknown_values_are_none():
    ring = GpuRing(capacity=3)
    ring.add(10.0, 1, 100)
    ring.add(30.0, 3, None)
    ring.add(20.0, "n/a", 200)  # published before the one at 30 s, taken after it
    ring.add(40.0, math.inf, 400)
    assert ring.export() == {"t": [20.0, 30.0, 40.0], "util": [None, 3.0, None], "mem_used": [200, None, 400]}


def test_gpus_a_site_stops_reporting_are_forgotten_and_so_is_a_site_without_any():
    h = GpuHistory()
    h.record("s1", 1.0, gpus(5, 6, 7))
    h.record("s1", 2.0, [{"index": 2, "util_percent": 8}])
    assert list(h.snapshot()[0]["s1"]) == ["2"]
    assert h.snapshot()[0]["s1"]["2"]["util"] == [7.0, 8.0]
    h.record("s1", 3.0, [])  # its host has no GPU now
    assert h.snapshot()[0] == {} and len(h) == 0


def test_sites_and_gpus_are_bounded_the_least_recently_heard_of_site_goes_first():
    h = GpuHistory(capacity=2, max_sites=3, max_gpus=4)
    for n in range(5):
        h.record(f"s{n}", float(n), gpus(*range(10)))
    h.record("s2", 9.0, gpus(1))  # heard of again: now the most recent
    h.record("s9", 10.0, gpus(1))
    assert sorted(h.snapshot()[0]) == ["s2", "s4", "s9"]
    assert list(h.snapshot()[0]["s4"]) == ["0", "1", "2", "3"]


def test_a_thousand_sites_with_eight_gpus_stay_within_a_few_bytes_a_sample():
    tracemalloc.start()
    try:
        h = GpuHistory(capacity=20)
        for beat in range(21):
            for s in range(1000):
                h.record(f"site-{s:04d}", float(beat), gpus(*[beat % 100] * 8, mem=2**34))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rings = [r for site in h._sites.values() for r in site.values()]
    assert len(rings) == 8000 and {len(r) for r in rings} == {20}
    # 24 bytes a sample (time, utilisation, memory) and about 1 KiB a GPU besides; Python floats
    # and ints in lists or deques would take four times that
    assert held < 8000 * (20 * 24 + 1024), held


def test_removed_sites_are_forgotten_by_event_or_by_the_registry():
    h = GpuHistory()
    for name in ("a", "b", "c"):
        h.record(name, 1.0, gpus(50))
    h.apply({"type": "site_status", "site": "a", "status": "REMOVED"})
    h.apply({"type": "site_status", "site": "b", "status": "DISCONNECTED"})  # kept: it may come back
    assert sorted(h.snapshot()[0]) == ["b", "c"]
    h.retain(["c"])
    assert sorted(h.snapshot()[0]) == ["c"]


def test_follows_the_heartbeats_of_a_real_event_bus():
    bus = EventBus()
    h = GpuHistory(capacity=10).follow(bus, every=3600)  # the answer takes them, not the thread
    try:
        for n in range(3):
            bus.publish("heartbeat", site="s1", info={"gpus": gpus(10 * n, 90)})
        bus.publish("heartbeat", site="s2", info={"host": {}})  # no GPU report: nothing recorded
        bus.publish("job_status", job_id="j", status="RUNNING")
        snap = h.snapshot()[0]
        assert sorted(snap) == ["s1"] and sorted(snap["s1"]) == ["0", "1"]
        assert snap["s1"]["0"]["util"] == [0.0, 10.0, 20.0] and snap["s1"]["1"]["util"] == [90.0] * 3
        t = snap["s1"]["0"]["t"]
        assert t == sorted(t) and len(set(t)) == 3  # the events' server times
        bus.publish("site_status", site="s1", status="REMOVED")
        assert h.snapshot()[0] == {}
    finally:
        h.close()
    assert not h._thread.is_alive() and bus._subs == []
