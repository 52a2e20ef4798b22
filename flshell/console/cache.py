"""ConsoleCache: the jobs, sites and connection state the console's completer and toolbar read,
kept fresh by a CacheRefresher thread so that neither ever calls the server."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from runtime.admin import AdminError, Event, ServerUnreachable, Session

FINAL = frozenset({"COMPLETED", "FAILED", "ABORTED"})
ACTIVE = ("RUNNING", "WAITING", "SUBMITTED")
WATCHED = ("job_status", "job_deleted", "site_status")  # the events that change the cache
JOB_LIMIT = 500  # newest jobs kept for completion; older ones are still reachable by typing the id


@dataclass(frozen=True)
class Notice:
    """A change worth telling the user about: a job ended, a site left or came back, the
    server went away or came back. `kind` is "job", "site" or "connection"."""

    kind: str
    subject: str  # job id, site name, or server address
    status: str
    previous: str | None = None
    name: str = ""  # the job's name
    detail: str = ""  # the job's reason, or the connection error


@dataclass(frozen=True)
class Summary:
    """What the toolbar shows."""

    state: str  # "connecting" | "connected" | "reconnecting"
    retries: int
    sites_up: int  # CONNECTED: heartbeats fresh
    sites_total: int  # every site the server knows (LOST and DISCONNECTED ones too)
    jobs_running: int
    jobs_waiting: int
    updated_at: float | None
    sites_stale: int = 0  # late with their heartbeats: not up, not gone yet


class ConsoleCache:
    """Thread-safe copy of what the console knows about the server. Two sources write to it:
    full listings (`load`, every couple of seconds) and single events (`apply_event`). Both
    return the Notices their change implies, so a change is told once whichever source saw it
    first; a listing that started before an event about the same job or site does not undo it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._sites: dict[str, dict[str, Any]] = {}
        self._gen = 0  # events applied so far
        self._touched: dict[tuple[str, str], int] = {}  # ("job"|"site", key) -> gen of its last event
        self.loaded = False
        self.state = "connecting"
        self.retries = 0
        self.error: str | None = None
        self.updated_at: float | None = None

    # ---- readers (the completer and the toolbar) -----------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        """Jobs, the active ones first, then newest first."""
        with self._lock:
            jobs = [dict(j) for j in self._jobs.values()]
        rank = {s: i for i, s in enumerate(ACTIVE)}
        jobs.sort(key=lambda j: -float(j.get("submitted_at") or 0))
        jobs.sort(key=lambda j: rank.get(j.get("status"), len(ACTIVE)))
        return jobs

    def sites(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted((dict(s) for s in self._sites.values()), key=lambda s: s["name"])

    def summary(self) -> Summary:
        with self._lock:
            statuses = [j.get("status") for j in self._jobs.values()]
            return Summary(
                state=self.state, retries=self.retries,
                sites_up=sum(s.get("status") == "CONNECTED" for s in self._sites.values()),
                sites_total=len(self._sites),
                sites_stale=sum(s.get("status") == "STALE" for s in self._sites.values()),
                jobs_running=statuses.count("RUNNING"),
                jobs_waiting=statuses.count("WAITING") + statuses.count("SUBMITTED"),
                updated_at=self.updated_at)

    def generation(self) -> int:
        """Pass this to `load` with the listing fetched after reading it."""
        with self._lock:
            return self._gen

    # ---- writers (the refresher) ---------------------------------------------------------

    def load(self, jobs: list[dict[str, Any]], sites: list[dict[str, Any]], since_gen: int = 0) -> list[Notice]:
        """Replace the cache with full listings fetched after `generation()` returned `since_gen`;
        jobs and sites that an event changed since then keep the event's word."""
        notices: list[Notice] = []
        with self._lock:
            first = not self.loaded
            new_jobs: dict[str, dict[str, Any]] = {}
            for job in jobs:
                job_id = job["job_id"]
                old = self._jobs.get(job_id)
                recent = self._touched.get(("job", job_id), -1) > since_gen
                if old is None and recent:
                    continue  # deleted after this listing was fetched
                if old is not None and (recent or (old.get("status") in FINAL and job.get("status") not in FINAL)):
                    job = {**job, "status": old["status"], "reason": old.get("reason", job.get("reason"))}
                new_jobs[job_id] = job
                if not first:
                    notices += _job_change(old, job)
            for job_id, old in self._jobs.items():  # kept: seen in an event, not yet in a listing
                if job_id not in new_jobs and self._touched.get(("job", job_id), -1) > since_gen:
                    new_jobs[job_id] = old
            new_sites: dict[str, dict[str, Any]] = {}
            for site in sites:
                name = site["name"]
                old = self._sites.get(name)
                if old is not None and self._touched.get(("site", name), -1) > since_gen:
                    site = {**site, "status": old["status"]}
                new_sites[name] = site
                if not first:
                    notices += _site_change(old, site)
            for name, old in self._sites.items():
                if name not in new_sites and self._touched.get(("site", name), -1) > since_gen:
                    new_sites[name] = old
            self._jobs, self._sites = new_jobs, new_sites
            self.loaded = True
            self.updated_at = time.time()
        return notices

    def apply_event(self, event: Event) -> list[Notice]:
        """Fold one watch event (job_status, job_deleted, site_status) into the cache."""
        with self._lock:
            self._gen += 1
            if event.type == "job_status" and event.get("job_id"):
                job_id = str(event.get("job_id"))
                old = self._jobs.get(job_id)
                if old is not None and old.get("status") in FINAL and event.get("status") not in FINAL:
                    return []
                job = {**(old or {"job_id": job_id, "short_id": job_id[:8], "submitted_at": event.ts}),
                       "status": event.get("status"), "reason": event.get("reason") or ""}
                if event.get("name"):
                    job["name"] = event.get("name")
                self._jobs[job_id] = job
                self._touched[("job", job_id)] = self._gen
                return _job_change(old, job) if self.loaded else []
            if event.type == "job_deleted" and event.get("job_id"):
                self._jobs.pop(str(event.get("job_id")), None)
                self._touched[("job", str(event.get("job_id")))] = self._gen
                return []
            if event.type == "site_status" and event.get("site"):
                name = str(event.get("site"))
                old = self._sites.get(name)
                site = {**(old or {"name": name}), "status": event.get("status")}
                self._sites[name] = site
                self._touched[("site", name)] = self._gen
                return _site_change(old, site) if self.loaded else []
            return []

    def mark_connected(self, address: str) -> list[Notice]:
        with self._lock:
            previous, self.state, self.retries, self.error = self.state, "connected", 0, None
        if previous == "reconnecting":
            return [Notice("connection", address, "connected", previous)]
        return []

    def mark_unreachable(self, address: str, error: str) -> list[Notice]:
        with self._lock:
            previous, self.state, self.error = self.state, "reconnecting", error
            self.retries += 1
        if previous != "reconnecting":
            return [Notice("connection", address, "reconnecting", previous, detail=error)]
        return []


def _job_change(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Notice]:
    """A job that reached a final status (one not seen before) is news."""
    status = new.get("status")
    if status not in FINAL or (old is not None and old.get("status") == status):
        return []
    return [Notice("job", new["job_id"], status, old.get("status") if old else None,
                   name=str(new.get("name") or ""), detail=str(new.get("reason") or ""))]


def _site_change(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Notice]:
    """A site that joined, left, was lost, or came back is news; STALE and back is not."""
    status, before = new.get("status"), (old or {}).get("status")
    if status == before:
        return []
    if status in ("LOST", "DISCONNECTED") or (status == "CONNECTED" and before != "STALE"):
        return [Notice("site", new["name"], str(status), before)]
    return []


class CacheRefresher:
    """Keeps a ConsoleCache fresh: one thread lists jobs and sites every `interval` seconds
    (at once after an event, backing off while the server is unreachable), one thread follows
    the server's job_status / job_deleted / site_status events and resubscribes when the stream breaks.
    `on_notice` gets every Notice; `on_change` is called after every change (redraw the toolbar).
    Both are called on the refresher's threads."""

    def __init__(self, session: Session, cache: ConsoleCache, interval: float = 2.0,
                 on_notice: Callable[[Notice], None] | None = None,
                 on_change: Callable[[], None] | None = None, max_backoff: float = 3.0) -> None:
        self.session = session
        self.cache = cache
        self.interval = interval
        self.max_backoff = max_backoff
        self._on_notice = on_notice or (lambda notice: None)
        self._on_change = on_change or (lambda: None)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: Any = None
        self._threads = [threading.Thread(target=self._poll_loop, name="flshell-console-poll", daemon=True),
                         threading.Thread(target=self._watch_loop, name="flshell-console-watch", daemon=True)]

    def start(self) -> "CacheRefresher":
        for t in self._threads:
            t.start()
        return self

    def refresh_now(self) -> None:
        """Ask for a listing now (after a command changed something)."""
        self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout)

    def __enter__(self) -> "CacheRefresher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _backoff(self) -> float:
        return min(self.max_backoff, 0.25 * 2 ** max(0, self.cache.retries - 1))

    def _emit(self, notices: list[Notice]) -> None:
        for notice in notices:
            self._on_notice(notice)
        self._on_change()

    def _poll_loop(self) -> None:
        address = self.session.address
        while not self._stop.is_set():
            self._wake.clear()
            since = self.cache.generation()
            try:
                jobs = self.session.list_jobs(limit=JOB_LIMIT)
                sites = self.session.list_sites()
            except ServerUnreachable as e:
                if self._stop.is_set():
                    return
                self._emit(self.cache.mark_unreachable(address, str(e)))
                delay = self._backoff()
            except AdminError:  # an odd reply (or a closed session): try again later
                if self._stop.is_set():
                    return
                delay = self.interval
            else:
                notices = self.cache.mark_connected(address)
                self._emit(notices + self.cache.load(jobs, sites, since))
                delay = self.interval
            self._wake.wait(delay)

    def _watch_loop(self) -> None:
        """A broken stream is a lost connection too (a server restarted between two listings
        is seen only here): it is told, and so is the subscription that works again."""
        address = self.session.address
        failures = 0
        while not self._stop.is_set():
            try:
                stream = self.session.watch(types=WATCHED)
            except AdminError as e:
                if self._stop.is_set():
                    return
                if isinstance(e, ServerUnreachable):
                    self._emit(self.cache.mark_unreachable(address, str(e)))
                failures += 1
                self._stop.wait(min(self.max_backoff, 0.25 * 2 ** (failures - 1)))
                continue
            with self._stream_lock:
                if self._stop.is_set():
                    stream.close()
                    return
                self._stream = stream
            failures = 0
            self._emit(self.cache.mark_connected(address))
            self._wake.set()  # a fresh subscription: list once so nothing missed meanwhile is lost
            try:
                for event in stream:
                    notices = self.cache.apply_event(event)
                    if event.type == "dropped":
                        self._wake.set()
                    self._emit(notices)
            except ServerUnreachable as e:
                if not self._stop.is_set():
                    self._emit(self.cache.mark_unreachable(address, str(e)))
            except AdminError:
                pass
            finally:
                with self._stream_lock:
                    if self._stream is stream:
                        self._stream = None
                stream.close()
            if not self._stop.is_set():
                self._wake.set()
                self._stop.wait(0.25)
