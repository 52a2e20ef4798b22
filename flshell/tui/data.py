"""Where the TUI's data comes from: the DataSource protocol, a live one over an admin Session
and a scripted one (fixed data, a frozen clock) for tests and snapshots.

Every call blocks and is made from a worker thread, never from the UI's event loop. Calls raise
runtime.admin.errors.AdminError subclasses; ServerUnreachable means the connection is gone.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

from runtime.admin.errors import AdminError, NotFound, Refused, ServerUnreachable, UnknownJob, Unsupported
from runtime.admin.session import Event

# The events the TUI listens to (everything but per-batch metric counts and raw log lines).
WATCH_TYPES = ("job_status", "job_deleted", "site_status", "heartbeat", "round_started",
               "round_completed", "task_assigned", "task_result")
FINAL = frozenset({"COMPLETED", "FAILED", "ABORTED"})


@dataclass
class Snapshot:
    """What the server says now: its jobs and sites (as list_jobs / list_sites give them), its
    system_info and its recent GPU load (as Session.gpu_history gives it; both may be empty)."""

    jobs: list[dict[str, Any]]
    sites: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    gpu_history: dict[str, dict[int, dict[str, list[Any]]]] = field(default_factory=dict)


class Closable(Protocol):
    def close(self) -> None: ...


class EventFeed(Iterator[Event], Closable, Protocol):
    """An open watch: iterate its events; `close()` from any thread ends the iteration.
    `seq`: the server's last event seq when the watch began (None if unknown)."""

    seq: int | None


class LogStream(Iterator[str], Closable, Protocol):
    """Lines of a log (no line ends); `close()` from any thread ends the iteration."""


@runtime_checkable
class DataSource(Protocol):
    """A federation as the TUI sees it: a snapshot, a stream of events, a log tail, actions."""

    address: str

    def clock(self) -> float:
        """Now, in seconds since the epoch (a fake clock makes ages and durations fixed)."""

    def load(self) -> Snapshot:
        """Jobs, sites, server info and recent GPU load, now (one light call each)."""

    def watch(self, since: int | None = None, types: Iterable[str] = WATCH_TYPES) -> EventFeed:
        """Subscribe to events; when it returns nothing later is missed (`since`: resume)."""

    def get_job(self, ref: str) -> dict[str, Any]:
        """One job with its `rounds` and failure details."""

    def tail_log(self, ref: str, site: str | None, lines: int = 200, follow: bool = True) -> LogStream:
        """The last `lines` of the job's server log (site None) or a site's log, then new ones."""

    def submit_job(self, folder: str) -> str: ...

    def abort_job(self, ref: str) -> dict[str, Any]: ...

    def clone_job(self, ref: str) -> str: ...

    def download_job(self, ref: str, dest: str) -> Path: ...

    def close(self) -> None: ...


# ---- live: an admin Session -------------------------------------------------------------------


class SessionSource:
    """A live server through runtime.admin.Session (thread-safe, so workers share it)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.address = session.address

    def clock(self) -> float:
        return time.time()

    def load(self) -> Snapshot:
        try:
            info = self.session.system_info()
        except Unsupported:  # an older server without it: the rest still shows
            info = {}
        jobs, sites = self.session.list_jobs(), self.session.list_sites()
        history: dict[str, dict[int, dict[str, list[Any]]]] = {}
        if any((s.get("info") or {}).get("gpus") for s in sites) and self.session.supports("gpu_history"):
            history = self.session.gpu_history()  # (else the sparklines start from the next beat)
        return Snapshot(jobs, sites, info, history)

    def watch(self, since: int | None = None, types: Iterable[str] = WATCH_TYPES) -> EventFeed:
        return self.session.watch(since=since, types=types)

    def get_job(self, ref: str) -> dict[str, Any]:
        return self.session.get_job(ref)

    def tail_log(self, ref: str, site: str | None, lines: int = 200, follow: bool = True) -> LogStream:
        """Session.tail_log: its stream closes from another thread (a worker blocked on a quiet
        log must end when the user looks elsewhere)."""
        return self.session.tail_log(ref, site, lines=lines, follow=follow)

    def submit_job(self, folder: str) -> str:
        return self.session.submit_job(folder)

    def abort_job(self, ref: str) -> dict[str, Any]:
        return self.session.abort_job(ref)

    def clone_job(self, ref: str) -> str:
        return self.session.clone_job(ref)

    def download_job(self, ref: str, dest: str) -> Path:
        return self.session.download_job(ref, dest)

    def close(self) -> None:
        self.session.close()


# ---- scripted: fixed data for tests and snapshots ----------------------------------------------

_END = object()


class _QueueFeed:
    """Iterates a queue until `_END` (closed) or an exception instance (raised)."""

    def __init__(self, q: "queue.Queue[Any]", seq: int | None, on_close: Any = None) -> None:
        self._q, self.seq, self._on_close = q, seq, on_close

    def __iter__(self) -> "_QueueFeed":
        return self

    def __next__(self) -> Any:
        item = self._q.get()
        if item is _END:
            self._q.put(_END)  # stays ended
            raise StopIteration
        if isinstance(item, BaseException):
            self._q.put(_END)
            raise item
        return item

    def close(self) -> None:
        self._q.put(_END)
        if self._on_close is not None:
            self._on_close(self)


class ScriptedSource:
    """A federation that says what it was given: `jobs`, `sites` (dicts as the admin API gives
    them), `details` (job id -> extra get_job fields, e.g. rounds), `logs` ((job id, site or
    None) -> lines), `events` (replayed to every new watch), `gpu_history` (as
    Session.gpu_history gives it). `now` freezes the clock.

    Tests drive it: `push(event)` to open watches, `disconnect()` / `reconnect()`; actions are
    recorded in `calls` and change the jobs the way a server would say they did."""

    def __init__(self, jobs: list[dict[str, Any]] | None = None, sites: list[dict[str, Any]] | None = None, *,
                 details: dict[str, dict[str, Any]] | None = None,
                 logs: dict[tuple[str, str | None], list[str]] | None = None,
                 events: Iterable[Event] = (), info: dict[str, Any] | None = None,
                 gpu_history: dict[str, dict[int, dict[str, list[Any]]]] | None = None,
                 now: float | None = None, address: str = "scripted") -> None:
        self.jobs = [dict(j) for j in jobs or ()]
        self.sites = [dict(s) for s in sites or ()]
        self.details = dict(details or {})
        self.logs = {k: list(v) for k, v in (logs or {}).items()}
        self.events = list(events)
        self.info = dict(info or {})
        self.gpu_history = dict(gpu_history or {})
        self.now = now
        self.address = address
        self.calls: list[tuple[str, Any]] = []
        self.up = True
        self._lock = threading.Lock()
        self._feeds: list[_QueueFeed] = []
        self._tails: dict[tuple[str, str | None], list[_QueueFeed]] = {}
        self._seq = max((e.seq or 0 for e in self.events), default=0)

    def clock(self) -> float:
        return self.now if self.now is not None else time.time()

    def _check_up(self) -> None:
        if not self.up:
            raise ServerUnreachable(f"server unreachable at {self.address}: scripted disconnect")

    def load(self) -> Snapshot:
        self._check_up()
        with self._lock:
            return Snapshot([dict(j) for j in self.jobs], [dict(s) for s in self.sites], dict(self.info),
                            dict(self.gpu_history))

    def watch(self, since: int | None = None, types: Iterable[str] = WATCH_TYPES) -> EventFeed:
        self._check_up()
        q: "queue.Queue[Any]" = queue.Queue()
        for event in self.events:
            if since is None or event.seq is None or event.seq > since:
                q.put(event)
        feed = _QueueFeed(q, self._seq, self._forget)
        with self._lock:
            self._feeds.append(feed)
        return feed

    def _forget(self, feed: _QueueFeed) -> None:
        with self._lock:
            if feed in self._feeds:
                self._feeds.remove(feed)

    def push(self, *events: Event) -> None:
        """Deliver events to every open watch, in order; a heartbeat also updates its site's
        info, as the server's registry does, so a later snapshot does not contradict it."""
        with self._lock:
            feeds = list(self._feeds)
            by_name = {s.get("name"): s for s in self.sites}
            for event in events:
                site = by_name.get(event.get("site")) if event.type == "heartbeat" else None
                if site is not None:
                    site["info"] = {**(site.get("info") or {}), **(event.get("info") or {})}
        for feed in feeds:
            for event in events:
                feed._q.put(event)

    @property
    def watching(self) -> int:
        with self._lock:
            return len(self._feeds)

    def disconnect(self) -> None:
        """The server goes away: open watches fail, every call raises ServerUnreachable."""
        self.up = False
        with self._lock:
            feeds, self._feeds = list(self._feeds), []
        for feed in feeds:
            feed._q.put(ServerUnreachable(f"server unreachable at {self.address}: scripted disconnect"))

    def reconnect(self) -> None:
        self.up = True

    def _job(self, ref: str) -> dict[str, Any]:
        matches = [j for j in self.jobs if j["job_id"].startswith(ref)]
        if len(matches) != 1:
            raise UnknownJob(f"no job {ref!r} on {self.address}")
        return matches[0]

    def get_job(self, ref: str) -> dict[str, Any]:
        self._check_up()
        with self._lock:
            job = self._job(ref)
            return {"rounds": [], "failure_details": {}, **dict(job), **self.details.get(job["job_id"], {})}

    def tail_log(self, ref: str, site: str | None, lines: int = 200, follow: bool = True) -> LogStream:
        self._check_up()
        q: "queue.Queue[Any]" = queue.Queue()
        with self._lock:  # the last lines and the follower together: append_log misses none
            job = self._job(ref)
            key = (job["job_id"], site)
            text = self.logs.get(key)
            if text is None:
                raise NotFound(f"job {job['job_id'][:8]} has no log from {site or 'the server'} yet")
            for line in text[-lines:] if lines >= 0 else text:
                q.put(line)
            if not follow:
                q.put(_END)
                return _QueueFeed(q, None)
            feed = _QueueFeed(q, None, lambda f: self._forget_tail(key, f))
            self._tails.setdefault(key, []).append(feed)
        return feed

    def _forget_tail(self, key: tuple[str, str | None], feed: _QueueFeed) -> None:
        with self._lock:
            if feed in self._tails.get(key, ()):
                self._tails[key].remove(feed)

    def append_log(self, job_id: str, site: str | None, *lines: str) -> None:
        """Add lines to a log, and send them to whoever follows it."""
        with self._lock:
            self.logs.setdefault((job_id, site), []).extend(lines)
            feeds = list(self._tails.get((job_id, site), ()))
        for feed in feeds:
            for line in lines:
                feed._q.put(line)

    def submit_job(self, folder: str) -> str:
        self._check_up()
        if not os.path.isdir(folder):
            raise AdminError(f"{folder} is not a folder")
        job_id = f"{len(self.jobs) + 1:08x}-0000-4000-8000-000000000000"
        with self._lock:
            self.calls.append(("submit_job", folder))
            self.jobs.insert(0, {"job_id": job_id, "short_id": job_id[:8], "name": Path(folder).name,
                                 "status": "SUBMITTED", "submitted_at": self.clock(), "sites": []})
        return job_id

    def abort_job(self, ref: str) -> dict[str, Any]:
        self._check_up()
        with self._lock:
            job = self._job(ref)
            if job["status"] in FINAL:
                raise Refused(f"job {job['job_id'][:8]} has already ended ({job['status']})")
            self.calls.append(("abort_job", job["job_id"]))
            job.update(status="ABORTED", reason="aborted by admin", ended_at=self.clock())
            return dict(job)

    def clone_job(self, ref: str) -> str:
        self._check_up()
        with self._lock:
            job = self._job(ref)
            self.calls.append(("clone_job", job["job_id"]))
            new_id = f"{len(self.jobs) + 1:08x}-0000-4000-8000-000000000001"
            self.jobs.insert(0, {**job, "job_id": new_id, "short_id": new_id[:8], "status": "SUBMITTED",
                                 "current_round": None, "started_at": None, "ended_at": None})
        return new_id

    def download_job(self, ref: str, dest: str) -> Path:
        self._check_up()
        with self._lock:
            job = self._job(ref)
            self.calls.append(("download_job", job["job_id"]))
        target = Path(dest) / job["job_id"]
        target.mkdir(parents=True)
        return target

    def close(self) -> None:
        with self._lock:
            feeds, self._feeds = list(self._feeds), []
        for feed in feeds:
            feed._q.put(_END)
