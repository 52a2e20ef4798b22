"""A fixed federation for the ScriptedSource: four jobs, four sites (fresh, late, stale, lost),
three GPUs with a utilisation history; every time is relative to a frozen `now`."""

from __future__ import annotations

import math

from runtime.admin.session import Event

from flshell.tui.data import ScriptedSource

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
RUNNING = "3f2a9c1e-5b7d-4e8a-9c0f-1a2b3c4d5e6f"
DONE = "8b1d4e7a-2c3f-4a5b-8c9d-0e1f2a3b4c5d"
FAILED = "c7e2f9a1-4d6b-4c8e-a1f3-5b7d9e0a2c4e"
WAITING = "e4a6c8b0-1d3f-4e5a-b7c9-2d4f6a8b0c1e"
GIB = 1 << 30


def _gpu(index: int, util: float, mem_gib: float, temp: float, power: float, job: str | None) -> dict:
    return {"index": index, "name": "NVIDIA H100 80GB HBM3", "util_percent": util,
            "mem_used": int(mem_gib * GIB), "mem_total": 80 * GIB, "temperature_c": temp, "power_w": power,
            "processes": [{"pid": 4242 + index, "job_id": job, "mem_used": int(mem_gib * GIB)}] if job else []}


def demo_source(now: float = NOW, address: str = "127.0.0.1:8003") -> ScriptedSource:
    jobs = [
        {"job_id": RUNNING, "short_id": RUNNING[:8], "name": "cifar10-fedavg", "status": "RUNNING",
         "submitted_at": now - 400, "started_at": now - 380, "ended_at": None, "current_round": 3,
         "total_rounds": 8, "round_in_progress": True, "sites": ["site-1", "site-2", "site-3"]},
        {"job_id": WAITING, "short_id": WAITING[:8], "name": "hello-numpy", "status": "WAITING",
         "reason": "waiting for a free run slot: 1 of 1 jobs running", "submitted_at": now - 60,
         "started_at": None, "ended_at": None, "current_round": None, "total_rounds": 5, "sites": []},
        {"job_id": DONE, "short_id": DONE[:8], "name": "hello-numpy", "status": "COMPLETED",
         "submitted_at": now - 7300, "started_at": now - 7290, "ended_at": now - 7100, "current_round": 4,
         "total_rounds": 5, "sites": ["site-1", "site-2"]},
        {"job_id": FAILED, "short_id": FAILED[:8], "name": "prostate-seg", "status": "FAILED",
         "reason": "site-4 lost: no heartbeat for 50s", "submitted_at": now - 3000,
         "started_at": now - 2990, "ended_at": now - 2400, "current_round": 1, "total_rounds": 20,
         "sites": ["site-2", "site-4"]},
    ]
    host = {"cpu_percent": 37.5, "cpu_count": 16, "mem_used": 24 * GIB, "mem_total": 64 * GIB,
            "load_avg": [6.1, 5.8, 5.2]}
    sites = [
        {"name": "site-1", "status": "CONNECTED", "last_seen": now - 1.2, "heartbeat_age": 1.2,
         "registered_at": now - 7400,
         "info": {"jobs": [RUNNING], "host": host,
                  "gpus": [_gpu(0, 92, 71.5, 71, 612, RUNNING), _gpu(1, 41, 12.0, 52, 240, RUNNING)]}},
        {"name": "site-2", "status": "CONNECTED", "last_seen": now - 14, "heartbeat_age": 14.0,
         "info": {"jobs": [RUNNING], "host": {**host, "cpu_percent": 81.0, "mem_used": 58 * GIB},
                  "gpus": [_gpu(0, 4, 3.2, 38, 71, None)]}},
        {"name": "site-3", "status": "STALE", "last_seen": now - 21, "heartbeat_age": 21.0,
         "info": {"jobs": [RUNNING], "host": {**host, "cpu_percent": 5.0}, "gpus": []}},
        {"name": "site-4", "status": "LOST", "last_seen": now - 2460, "heartbeat_age": 2460.0,
         "info": {"jobs": [], "host": {}, "gpus": []}},
    ]
    rounds = [{"round": r, "total_rounds": 8, "recorded_at": now - 380 + 40 * (r + 1),
               "metrics": {"accuracy": round(0.42 + 0.11 * r - 0.01 * r * r, 4),
                           "loss": round(1.9 * math.exp(-0.45 * r), 4)}} for r in range(3)]
    done_rounds = [{"round": r, "total_rounds": 5, "recorded_at": now - 7290 + 38 * (r + 1),
                    "metrics": {"mean_weight": 5.0 + 1.5 * r}} for r in range(5)]
    events: list[Event] = []
    seq = 0
    for k in range(24):  # two minutes of 5 s heartbeats, oldest first (host and GPU load)
        ts = now - 6.2 - 5 * (23 - k)  # the latest beat (below) comes 5 s after the last of these
        for site, gpus, cpu in (("site-1", [(0, 60 + 35 * math.sin(k / 3.0) ** 2, 71.5), (1, 20 + k * 0.9, 12.0)],
                                 30 + 25 * math.sin(k / 4.0) ** 2),
                                ("site-2", [(0, 4 + (k % 3), 3.2)], 60 + k)):
            seq += 1
            gpu_list = [_gpu(i, round(u, 1), m, 60, 300, None) for i, u, m in gpus]
            load = {**host, "cpu_percent": round(cpu, 1), "mem_used": int((20 + k / 3) * GIB)}
            events.append(Event(seq, ts if site == "site-1" else ts - 12.8, "heartbeat",
                                {"site": site, "info": {"gpus": gpu_list, "host": load}}))
    for r in rounds:  # what the server said as rounds ended (who reported, how long it took)
        seq += 1
        events.append(Event(seq, r["recorded_at"], "round_completed", {
            "job_id": RUNNING, "round": r["round"], "total_rounds": 8, "seconds": 38.5 + r["round"],
            "sites_ok": ["site-1", "site-2", "site-3"] if r["round"] < 2 else ["site-1", "site-2"],
            "sites_failed": [], "sites_timed_out": [] if r["round"] < 2 else ["site-3"],
            "metrics": r["metrics"]}))
    seq += 1
    events.append(Event(seq, now - 20, "round_started", {"job_id": RUNNING, "round": 3, "total_rounds": 8,
                                                         "sites": 3}))
    events.append(Event(seq + 1, now - 5, "task_assigned", {"job_id": RUNNING, "site": "site-1", "task": "train"}))
    events.append(Event(seq + 2, now - 4, "task_result",
                        {"job_id": RUNNING, "site": "site-2", "task": "train", "ok": True, "seconds": 31.2}))
    events.append(Event(seq + 3, now - 3, "task_assigned", {"job_id": RUNNING, "site": "site-3", "task": "train"}))
    # the latest heartbeat carries the site's current GPUs (so the panel matches the snapshot)
    for site in sites[:2]:
        seq_last = seq + 4 + sites.index(site)
        events.append(Event(seq_last, now - site["heartbeat_age"], "heartbeat",
                            {"site": site["name"], "info": {"gpus": site["info"]["gpus"],
                                                            "host": site["info"]["host"]}}))
    logs = {(RUNNING, None): [f"2026-01-01 00:{i // 6:02d}:{i % 6}0 round {i // 4 + 1}/8 step {i}" for i in range(30)],
            (RUNNING, "site-1"): [f"site-1: epoch {i} loss {1.9 * math.exp(-0.1 * i):.3f}" for i in range(30)],
            (RUNNING, "site-2"): ["site-2: training"], (RUNNING, "site-3"): ["site-3: training"]}
    return ScriptedSource(jobs, sites, details={RUNNING: {"rounds": rounds}, DONE: {"rounds": done_rounds}},
                          logs=logs, events=events, now=now, address=address,
                          info={"server": "demo", "max_jobs": 1})
