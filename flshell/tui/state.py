"""The TUI's view of the federation: jobs, sites and GPU history, kept current from snapshots and
events. Only bookkeeping of what the server said; no FL decisions are made here."""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.admin.session import Event

from flshell.tui.data import FINAL, Snapshot
from flshell.tui.feed import Batch, host_sample

GPU_HISTORY = 120   # utilisation samples kept per GPU (10 minutes at a 5 s heartbeat)
HOST_HISTORY = 120  # host CPU / memory samples kept per site (the server keeps none)
STATUS_LOG = 20     # status changes remembered per site


@dataclass
class Changes:
    """What one snapshot or batch changed, for the messages the app posts."""

    jobs: set[str] = field(default_factory=set)
    sites: set[str] = field(default_factory=set)
    beats: set[str] = field(default_factory=set)
    gpus: set[tuple[str, int]] = field(default_factory=set)
    rounds: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    dropped: int = 0  # events lost on the way (the server's `dropped`, our queue's overflow)


@dataclass
class SiteTask:
    """The last task the server gave a site for a job, and how it ended (None: still running)."""

    task: str
    ok: bool | None = None
    seconds: float | None = None


class FederationState:
    """Jobs by id, sites by name, per-GPU utilisation history. Times are on the local clock:
    a site's `seen` is its last_seen shifted by the server's clock skew (measured on load).

    The GPU history starts from the server's (a snapshot's `gpu_history`), so a TUI opened now
    shows the past minutes, and goes on from heartbeats; `gpu_times` holds each sample's server
    time, so a snapshot and the heartbeats that overlap it are merged without doubles."""

    def __init__(self, clock: Callable[[], float], history: int = GPU_HISTORY) -> None:
        self.clock = clock
        self.history = history
        self.jobs: dict[str, dict[str, Any]] = {}
        self.sites: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, float] = {}
        self.gpu_util: dict[tuple[str, int], collections.deque[float]] = {}
        self.gpu_times: dict[tuple[str, int], collections.deque[float]] = {}  # server time of each
        self.gpu_seeded: dict[tuple[str, int], float] = {}  # newest server time a snapshot gave
        # host load per site from its heartbeats: (server time, CPU %, memory %), oldest first
        self.host: dict[str, collections.deque[tuple[float, float | None, float | None]]] = {}
        self.beat_times: dict[str, collections.deque[float]] = {}  # server time of each beat heard
        # (local time, status) of each status change seen; time None: the status when first seen
        self.status_log: dict[str, collections.deque[tuple[float | None, str]]] = {}
        self.tasks: dict[tuple[str, str], SiteTask] = {}      # (job id, site) -> last task
        self.round_records: dict[str, dict[int, dict[str, Any]]] = {}  # job id -> round -> record
        self.info: dict[str, Any] = {}
        self.skew = 0.0
        self.loaded_at: float | None = None   # local time of the last snapshot or event
        self.heartbeats = 0
        self.last_seq: int | None = None      # the newest event seq applied (tests wait on it)

    # ---- queries ---------------------------------------------------------------------------

    def age(self, site: str) -> float | None:
        seen = self.seen.get(site)
        return None if seen is None else max(0.0, self.clock() - seen)

    def beat_interval(self, site: str) -> float | None:
        """Seconds between the site's heartbeats (the median of those heard), None before two."""
        times = list(self.beat_times.get(site, ()))
        gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
        return gaps[len(gaps) // 2] if gaps else None

    def jobs_of_site(self, site: str) -> list[dict[str, Any]]:
        """Every job known to have run on the site (placed there, or reported by its heartbeat),
        newest first."""
        running = set(self.site_jobs(site))
        return [j for j in self.job_list() if j["job_id"] in running or site in (j.get("sites") or ())]

    def job_list(self) -> list[dict[str, Any]]:
        """Jobs newest first (by submission time, then id)."""
        return sorted(self.jobs.values(), key=lambda j: (-(j.get("submitted_at") or 0), j["job_id"]))

    def site_jobs(self, site: str) -> list[str]:
        """The jobs a site runs: what its heartbeat says, else the running jobs placed on it
        (sites that do not heartbeat, e.g. a simulation's)."""
        reported = self.sites.get(site, {}).get("info", {}).get("jobs")
        if reported is not None:
            return list(reported)
        return [j["job_id"] for j in self.job_list()
                if j.get("status") == "RUNNING" and site in (j.get("sites") or ())]

    # ---- snapshots -------------------------------------------------------------------------

    def load(self, snap: Snapshot) -> Changes:
        now = self.clock()
        changes = Changes()
        jobs = {j["job_id"]: dict(j) for j in snap.jobs}
        changes.jobs = set(jobs) ^ set(self.jobs) | {k for k, j in jobs.items() if self.jobs.get(k) != j}
        self.jobs = jobs
        skews = [now - (s["last_seen"] + s["heartbeat_age"]) for s in snap.sites
                 if s.get("last_seen") is not None and s.get("heartbeat_age") is not None]
        if skews:
            self.skew = sorted(skews)[len(skews) // 2]
        sites: dict[str, dict[str, Any]] = {}
        for s in snap.sites:
            name = s["name"]
            old = self.sites.get(name)
            sites[name] = site = dict(s)
            site["info"] = {**(old or {}).get("info", {}), **(s.get("info") or {})}
            if s.get("heartbeat_age") is not None:
                self.seen[name] = max(self.seen.get(name, 0.0), now - float(s["heartbeat_age"]))
            self._log_status(name, s.get("status"), now if name in self.status_log else None)
            host = host_sample(Event(None, float(s.get("last_seen") or 0.0), "heartbeat", {"info": s.get("info")}))
            if host is not None and s.get("last_seen") is not None:
                self._add_host_sample(name, host)
            if old is None or old.get("status") != s.get("status") or old.get("info") != site["info"]:
                changes.sites.add(name)
            for gpu in site["info"].get("gpus") or ():  # their history comes from heartbeats
                changes.gpus.add((name, int(gpu.get("index", 0))))
        changes.sites |= set(self.sites) - set(sites)
        self.sites = sites
        for name, gpus in (snap.gpu_history or {}).items():
            for index, series in gpus.items():
                key = (name, int(index))
                if self._seed_gpu(key, series or {}):
                    changes.gpus.add(key)
        self.info = dict(snap.info)
        self.loaded_at = now
        return changes

    # ---- events ----------------------------------------------------------------------------

    def apply(self, batch: Batch) -> Changes:
        changes = Changes(dropped=batch.lost)
        for event in batch.events:
            handler = getattr(self, "_on_" + event.type, None)
            if handler is not None:
                handler(event, changes)
        for site, trail in batch.trails.items():
            for samples in trail:
                for index, util, ts in samples:
                    self._add_gpu_sample((site, index), util, ts)
                if samples:
                    self._add_beat_time(site, samples[0][2])
        for site, trail in batch.host_trails.items():
            for sample in trail:
                self._add_host_sample(site, sample)
        for site, event in batch.heartbeats.items():
            self._on_heartbeat(event, changes)
        seqs = [e.seq for e in (*batch.events, *batch.heartbeats.values()) if e.seq is not None]
        if seqs:
            self.last_seq = max(seqs + ([self.last_seq] if self.last_seq is not None else []))
        if batch:
            self.loaded_at = self.clock()
        return changes

    def _on_dropped(self, event: Event, changes: Changes) -> None:
        changes.dropped += int(event.get("count") or 0)

    def _local(self, ts: float) -> float:
        return ts + self.skew

    def _job(self, event: Event, changes: Changes) -> dict[str, Any] | None:
        job_id = event.get("job_id")
        if not job_id:
            return None
        changes.jobs.add(job_id)
        return self.jobs.setdefault(job_id, {"job_id": job_id, "short_id": job_id[:8],
                                             "name": event.get("name") or "?", "status": "SUBMITTED",
                                             "submitted_at": self._local(event.ts), "sites": []})

    def _on_job_status(self, event: Event, changes: Changes) -> None:
        job = self._job(event, changes)
        if job is None:
            return
        status = event.get("status") or job.get("status")
        job.update(status=status, reason=event.get("reason"))
        if event.get("name"):
            job["name"] = event.get("name")
        if status == "RUNNING" and not job.get("started_at"):
            job["started_at"] = self._local(event.ts)
        if status in FINAL:
            job["ended_at"] = job.get("ended_at") or self._local(event.ts)
            job["round_in_progress"] = False
            if status == "COMPLETED" and job.get("total_rounds"):
                job["current_round"] = job["total_rounds"] - 1

    def _on_job_deleted(self, event: Event, changes: Changes) -> None:
        if self.jobs.pop(event.get("job_id"), None) is not None:
            changes.jobs.add(event.get("job_id"))

    def _on_round_started(self, event: Event, changes: Changes) -> None:
        job = self._job(event, changes)
        if job is not None:
            job.update(current_round=event.get("round"), total_rounds=event.get("total_rounds"),
                       round_in_progress=True)
            if job.get("status") in (None, "SUBMITTED", "WAITING"):
                job["status"] = "RUNNING"

    def _on_round_completed(self, event: Event, changes: Changes) -> None:
        job = self._job(event, changes)
        if job is None or event.get("round") is None:
            return
        rnd = int(event.get("round"))
        job.update(current_round=rnd, total_rounds=event.get("total_rounds") or job.get("total_rounds"),
                   round_in_progress=False)
        record = {**event.data, "recorded_at": self._local(event.ts)}
        self.round_records.setdefault(job["job_id"], {})[rnd] = record
        changes.rounds.append((job["job_id"], rnd, record))

    def _on_task_assigned(self, event: Event, changes: Changes) -> None:
        if event.get("job_id") and event.get("site"):
            self.tasks[(event.get("job_id"), event.get("site"))] = SiteTask(str(event.get("task")))
            changes.sites.add(event.get("site"))
            changes.jobs.add(event.get("job_id"))

    def _on_task_result(self, event: Event, changes: Changes) -> None:
        if event.get("job_id") and event.get("site"):
            self.tasks[(event.get("job_id"), event.get("site"))] = SiteTask(
                str(event.get("task")), bool(event.get("ok")), event.get("seconds"))
            changes.sites.add(event.get("site"))
            changes.jobs.add(event.get("job_id"))

    def _on_site_status(self, event: Event, changes: Changes) -> None:
        name = event.get("site")
        if not name:
            return
        site = self.sites.setdefault(name, {"name": name, "info": {}})
        site["status"] = event.get("status")
        self._log_status(name, event.get("status"), self._local(event.ts))
        if event.get("status") == "CONNECTED":
            self.seen[name] = max(self.seen.get(name, 0.0), self._local(event.ts))
        changes.sites.add(name)

    def _on_heartbeat(self, event: Event, changes: Changes) -> None:
        name = event.get("site")
        if not name:
            return
        self.heartbeats += 1
        site = self.sites.setdefault(name, {"name": name, "status": "CONNECTED", "info": {}})
        info = event.get("info") or {}
        site["info"] = {**site.get("info", {}), **info}
        if site.get("status") in (None, "STALE", "LOST"):
            site["status"] = "CONNECTED"  # the engine does the same on a beat
            self._log_status(name, "CONNECTED", self._local(event.ts))
        self.seen[name] = max(self.seen.get(name, 0.0), self._local(event.ts))
        changes.beats.add(name)
        host = host_sample(event)
        if host is not None:
            self._add_host_sample(name, host)
        else:
            self._add_beat_time(name, event.ts)
        for gpu in info.get("gpus") or ():
            key = (name, int(gpu.get("index", 0)))
            util = gpu.get("util_percent")
            self._gpu_series(key)
            if isinstance(util, (int, float)):
                self._add_gpu_sample(key, float(util), event.ts)
            changes.gpus.add(key)

    # ---- site history ----------------------------------------------------------------------

    def _log_status(self, site: str, status: str | None, at: float | None) -> None:
        if not status:
            return
        log = self.status_log.setdefault(site, collections.deque(maxlen=STATUS_LOG))
        if not log or log[-1][1] != status:
            log.append((at, status))

    def _add_beat_time(self, site: str, ts: float) -> None:
        _insert(self.beat_times.setdefault(site, collections.deque(maxlen=HOST_HISTORY)), ts, ts)

    def _add_host_sample(self, site: str, sample: tuple[float, float | None, float | None]) -> None:
        """One host sample in time order: a snapshot gives the latest beat, and the replayed
        history that follows it is older; the same beat twice (same server time) counts once."""
        _insert(self.host.setdefault(site, collections.deque(maxlen=HOST_HISTORY)), sample, sample[0])
        self._add_beat_time(site, sample[0])

    # ---- GPU history -----------------------------------------------------------------------

    def _gpu_series(self, key: tuple[str, int]) -> tuple[collections.deque[float], collections.deque[float]]:
        if key not in self.gpu_util:
            self.gpu_util[key] = collections.deque(maxlen=self.history)
            self.gpu_times[key] = collections.deque(maxlen=self.history)
        return self.gpu_util[key], self.gpu_times[key]

    def _add_gpu_sample(self, key: tuple[str, int], util: float, ts: float) -> None:
        if ts <= self.gpu_seeded.get(key, float("-inf")):
            return  # a heartbeat the server's history already gave (it came while we loaded)
        utils, times = self._gpu_series(key)
        utils.append(util)
        times.append(ts)

    def _seed_gpu(self, key: tuple[str, int], series: dict[str, Any]) -> bool:
        """Merge the server's history of one GPU into ours: its samples replace ours over the
        span it covers; ours before it (the server restarted) and after it stay."""
        served = [(float(t), float(u)) for t, u in zip(series.get("t") or (), series.get("util") or ())
                  if isinstance(t, (int, float)) and isinstance(u, (int, float)) and not isinstance(u, bool)]
        if not served:
            return False
        first, last = served[0][0], served[-1][0]
        utils, times = self._gpu_series(key)
        ours = list(zip(times, utils))
        merged = [s for s in ours if s[0] < first] + served + [s for s in ours if s[0] > last]
        utils.clear()
        times.clear()
        for t, u in merged[-self.history:]:
            times.append(t)
            utils.append(u)
        self.gpu_seeded[key] = max(last, self.gpu_seeded.get(key, float("-inf")))
        return True


def _insert(series: collections.deque, item: Any, ts: float) -> None:
    """Put `item` (at server time `ts`) into a bounded series kept oldest first, once."""
    times = [x if isinstance(x, float) else x[0] for x in series]
    i = bisect.bisect_left(times, ts)
    if i < len(times) and times[i] == ts:
        return
    if len(series) == series.maxlen:
        if i == 0:
            return  # older than everything kept
        series.popleft()  # full: the oldest goes
        i -= 1
    series.insert(i, item)
