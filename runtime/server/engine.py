"""The server engine: site registry, per-site message queues, task/result matching, jobs.

It implements `FLHandler`, the site-facing calls any transport delivers to, and the
server-internal calls that job runners and controllers use to hand out tasks.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runtime.model import FLModel
from runtime.server.events import EventBus
from runtime.server.heartbeat import HeartbeatMonitor
from runtime.server.sites import SiteRecord, SiteRegistry, SiteStatus, next_seen_seq
from runtime.server.workspace_lock import WorkspaceLock
from runtime.transport.base import (
    JobEnd,
    JobStart,
    JobState,
    NotRegistered,
    ServerClosing,
    SiteMessage,
    TaskAssignment,
    TaskResult,
    TransportError,
)


_EMPTY: deque = deque()  # never appended to


@dataclass
class _PendingTask:
    job_id: str
    site: str
    task_name: str
    on_result: Callable[[TaskResult], None]
    assigned_at: float


class ServerEngine:
    """One per server process; jobs share it."""

    def __init__(
        self,
        workspace: str | Path,
        events: EventBus | None = None,
        heartbeat_interval: float = 5.0,
        monitor: bool = False,
        stale_after: float | None = None,
        lost_after: float | None = None,
    ) -> None:
        """With `monitor`, a HeartbeatMonitor marks silent sites STALE, then LOST (failing
        their tasks); `stale_after` / `lost_after` default to 3 and 10 heartbeat intervals.
        Off by default: the in-process simulator's sites cannot go silent. The engine holds
        its workspace (WorkspaceLocked if another live engine does) until close()."""
        self.workspace = Path(workspace)
        self.workspace_lock = WorkspaceLock(self.workspace).acquire()
        self.events = events or EventBus()
        self.heartbeat_interval = heartbeat_interval
        self.sites = SiteRegistry()
        self._lock = threading.Lock()
        self._tasks: dict[str, _PendingTask] = {}
        self._job_listeners: dict[str, Callable[[str, str, str | None], None]] = {}
        self._site_listeners: dict[str, Callable[[str], None]] = {}  # told when a site registers
        self._metric_sinks: dict[str, Callable[[str, list], None]] = {}
        self._log_sinks: dict[str, Callable[[str, str], None]] = {}
        self._failed_parts: dict[tuple[str, str], str] = {}  # (site, job) -> why, until the job ends
        self._job_archives: dict[str, tuple[Callable[[], bytes], set[str]]] = {}
        self._closed = False
        self._dirty: dict[str, None] = {}  # sites with queued messages, in arrival order
        self._dirty_cond = threading.Condition()
        self.monitor: HeartbeatMonitor | None = None
        if monitor:
            self.monitor = HeartbeatMonitor(
                self, heartbeat_interval, stale_after=stale_after, lost_after=lost_after
            ).start()

    # ---- FLHandler: calls that arrive from sites --------------------------------------------

    def register(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        if not site or not isinstance(site, str):
            raise TransportError(f"invalid site name {site!r}")
        with self.sites.status_lock:
            old = self.sites.get(site)
            previous = old.status if old is not None else None
            rec, new = self.sites.upsert(site, info)
            back = {"rejoined": True} if previous == SiteStatus.LOST else {}
            self.events.publish("site_status", site=site, status=rec.status, new=new, **back)
        for listener in list(self._site_listeners.values()):
            listener(site)  # e.g. a running job deployed there starts again on it
        return {"heartbeat_interval": self.heartbeat_interval}

    def heartbeat(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        rec = self._touch(site)
        rec.info.update(info)
        with self.sites.status_lock:  # the change and its event together (see SiteRegistry)
            if rec.status != SiteStatus.CONNECTED:  # a site that said goodbye beats again
                previous, rec.status = rec.status, SiteStatus.CONNECTED
                self.events.publish("site_status", site=site, status=rec.status,
                                    previous=previous)
        self.events.publish("heartbeat", site=site, info=info)
        return {"heartbeat_interval": self.heartbeat_interval}

    def poll(self, site: str, timeout: float, job_id: str | None = None) -> SiteMessage | None:
        """The next message for `site`; with `job_id`, the next one for that job's process
        (a site that runs jobs in child processes: see `send`)."""
        rec = self._site(site)
        self._seen([rec], polling=1)  # a site blocked in a long poll is alive
        try:
            with rec.cond:
                def box() -> deque:  # a job's inbox exists from its first message (see send)
                    return rec.inbox if job_id is None else rec.job_inboxes.get(job_id, _EMPTY)

                if not box() and timeout > 0:
                    rec.cond.wait_for(lambda: box() or self._closed, timeout)
                msg = box().popleft() if box() else None
                if job_id is not None and isinstance(msg, JobEnd):
                    rec.job_inboxes.pop(job_id, None)  # the job process is done with it
        finally:
            self._seen([rec], polling=-1)
        if msg is not None:
            return msg
        if self._closed:
            raise ServerClosing()
        return None

    def poll_many(self, sites: set[str], timeout: float) -> list[tuple[str, SiteMessage]]:
        """Messages queued for any of `sites` (each site's in order); waits up to `timeout`.

        A poll that finds messages waiting returns them at once and marks only their sites seen
        (their answers follow); one that has to wait marks every site of the set seen and
        polling, as a long poll of each. A pump hosting a thousand sites polls often while tasks
        stream out: each of those polls costs what it returns, not a pass over every site."""
        out: list[tuple[str, SiteMessage]] = []
        ready = self._take_dirty(sites)
        if ready:
            self._seen(self.sites.get_many(ready))
        else:
            polling = self.sites.get_many(sites)
            self._seen(polling, polling=1)
            try:
                with self._dirty_cond:
                    if timeout > 0 and not self._closed:
                        self._dirty_cond.wait_for(
                            lambda: self._closed or any(s in sites for s in self._dirty), timeout
                        )
                ready = self._take_dirty(sites)
            finally:
                self._seen(polling, polling=-1)
        if not ready and self._closed:
            raise ServerClosing()
        for site in ready:
            rec = self._site(site)
            with rec.cond:
                while rec.inbox:
                    out.append((site, rec.inbox.popleft()))
        return out

    def _take_dirty(self, sites: set[str]) -> list[str]:
        """The sites of `sites` with messages queued, in arrival order, no longer marked so."""
        with self._dirty_cond:
            ready = [s for s in self._dirty if s in sites]
            for s in ready:
                del self._dirty[s]
        return ready

    def submit_result(self, result: TaskResult) -> None:
        sender = self.sites.get(result.site)
        if sender is not None:
            self._seen([sender])
        self._finish_task(result)

    def expect_result(self, task_id: str, site: str) -> None:
        with self._lock:
            pending = self._tasks.get(task_id)
        if pending is None:
            raise TransportError(f"task {task_id[:64]} is not expected (unknown, finished, timed "
                                 f"out or cancelled); result from {site[:128]} refused")
        if pending.site != site:
            raise TransportError(f"task {task_id[:64]} was assigned to {pending.site}, not "
                                 f"{site[:128]}")

    def _finish_task(self, result: TaskResult) -> None:
        """Match `result` to its pending task and hand it on (a site's or one made here)."""
        with self._lock:
            pending = self._tasks.get(result.task_id)
            if pending is None:
                raise TransportError(
                    f"task {result.task_id} is not expected (unknown, finished, timed out or "
                    f"cancelled); result from {result.site} dropped"
                )
            if pending.site != result.site:
                raise TransportError(
                    f"task {result.task_id} was assigned to {pending.site}, not {result.site}"
                )
            del self._tasks[result.task_id]
        self.events.publish(
            "task_result",
            job_id=pending.job_id,
            site=result.site,
            task=pending.task_name,
            ok=result.ok,
            seconds=round(result.seconds, 4),
            error=_tail(result.error),
        )
        pending.on_result(result)

    def report_job(self, site: str, job_id: str, state: str, detail: str | None = None) -> None:
        """A site's part of a job is ready, finished or failed; a failed part fails the site's
        pending tasks of that job with its detail (e.g. its process died)."""
        self._touch(site)
        if state == JobState.READY:  # (again: a site whose part failed has started it anew)
            with self._lock:
                self._failed_parts.pop((site, job_id), None)
        listener = self._job_listeners.get(job_id)
        if listener is not None:
            listener(site, state, detail)
        if state == JobState.FAILED:
            with self._lock:
                self._failed_parts[(site, job_id)] = detail or f"{site}: its part of job {job_id} failed"
            self.fail_site_tasks(site, self._failed_parts[(site, job_id)], job_id=job_id)
            self._drop_assignments(site, lambda m: m.job_id == job_id)

    def ship_log(self, site: str, job_id: str, text: str) -> None:
        """Log text of a site's job, collected on the server (see add_log_sink)."""
        self._touch(site)
        sink = self._log_sinks.get(job_id)
        if sink is not None:
            sink(site, text)

    def log_metrics(self, site: str, job_id: str, records: list[dict[str, Any]]) -> None:
        self._touch(site)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise TransportError("metric records must be a list of objects")
        sink = self._metric_sinks.get(job_id)
        if sink is not None:
            sink(site, records)
        self.events.publish("metrics", job_id=job_id, site=site, count=len(records))

    def get_job(self, site: str, job_id: str) -> bytes:
        """The zipped folder of a job deployed to `site` (only to sites it was deployed to)."""
        self._touch(site)
        entry = self._job_archives.get(job_id)
        if entry is None or site not in entry[1]:
            raise TransportError(f"job {job_id} is not deployed to {site}")
        return entry[0](site)

    def add_job_archive(self, job_id: str, sites: list[str], make: Callable[[], bytes]) -> None:
        """Offer a job's folder to the sites it is deployed to: made when the first asks, kept
        until every one of them has it (then let go: a big job folder is not held for the whole
        job; a site that asks again, rejoining, has it made again)."""
        lock = threading.Lock()
        cache: list[bytes] = []
        waiting = set(sites)

        def fetch(site: str) -> bytes:
            with lock:
                if not cache:
                    cache.append(make())
                data = cache[0]
                waiting.discard(site)
                if not waiting:
                    cache.clear()
                return data

        self._job_archives[job_id] = (fetch, set(sites))

    def remove_job_archive(self, job_id: str) -> None:
        self._job_archives.pop(job_id, None)

    def add_log_sink(self, job_id: str, sink: Callable[[str, str], None]) -> None:
        self._log_sinks[job_id] = sink

    def remove_log_sink(self, job_id: str) -> None:
        self._log_sinks.pop(job_id, None)

    def add_metric_sink(self, job_id: str, sink: Callable[[str, list], None]) -> None:
        self._metric_sinks[job_id] = sink

    def remove_metric_sink(self, job_id: str) -> None:
        self._metric_sinks.pop(job_id, None)

    def goodbye(self, site: str) -> None:
        rec = self.sites.get(site)
        if rec is None:
            return
        with self.sites.status_lock:
            rec.status = SiteStatus.DISCONNECTED
            self.events.publish("site_status", site=site, status=rec.status)
        self.fail_site_tasks(site, f"{site} disconnected")

    def remove_site(self, site: str) -> bool:
        """Forget `site` (an operator's remove_client): its tasks fail, its queue goes. If it
        calls again it must register anew. False if it was not registered."""
        rec = self.sites.get(site)
        if rec is None:
            return False
        self.fail_site_tasks(site, f"{site} was removed by an operator")
        self.sites.remove(site)
        with rec.cond:
            rec.inbox.clear()
            rec.job_inboxes.clear()
            rec.cond.notify_all()
        self.events.publish("site_status", site=site, status="REMOVED")
        return True

    def lose_site(self, site: str, reason: str) -> None:
        """`site` is known to be gone (the simulator's worker process hosting it died): LOST
        now, not after heartbeats stop; its tasks fail with `reason`. A site that never
        registered gets a record, so the job can name it and send it nothing."""
        with self.sites.status_lock:
            rec = self.sites.get(site)
            if rec is None:
                rec, _ = self.sites.upsert(site, {})
            previous, rec.status = rec.status, SiteStatus.LOST
            self.events.publish("site_status", site=site, status=rec.status, previous=previous,
                                reason=reason)
        self.fail_site_tasks(site, reason)
        self._drop_assignments(site, lambda m: True)

    # ---- server-internal calls ---------------------------------------------------------------

    def send(self, site: str, message: SiteMessage) -> None:
        """Queue `message` for `site`. A site that runs each job in a child process (it
        registered with info `job_processes`) gets a job's tasks in that job's own inbox, which
        the child polls; the job's end goes to both the site and the child."""
        rec = self._site(site)
        with rec.cond:
            if rec.info.get("job_processes") and isinstance(message, (TaskAssignment, JobEnd)):
                rec.job_inboxes.setdefault(message.job_id, deque()).append(message)
                if isinstance(message, JobEnd):
                    rec.inbox.append(message)
            else:
                rec.inbox.append(message)
            rec.cond.notify_all()
        with self._dirty_cond:
            self._dirty[site] = None
            self._dirty_cond.notify_all()

    def assign_task(
        self,
        job_id: str,
        site: str,
        task_name: str,
        model: FLModel,
        timeout: float | None,
        on_result: Callable[[TaskResult], None],
        task_id: str | None = None,
    ) -> str:
        """Queue a task for `site`; `on_result` is called with its result (ok or failed)."""
        task_id = task_id or uuid.uuid4().hex
        with self._lock:
            self._tasks[task_id] = _PendingTask(job_id, site, task_name, on_result, time.time())
            dead = self._failed_parts.get((site, job_id))
        rec = self.sites.get(site)
        if dead is None and (rec is None or rec.status in (SiteStatus.LOST, SiteStatus.DISCONNECTED)):
            dead = f"{site} is {rec.status if rec else 'not registered'}"
        if dead is not None:  # no one would ever answer: fail it now instead of hanging a round
            self._finish_task(TaskResult(task_id, job_id, site, ok=False, error=dead))
            return task_id
        self.events.publish("task_assigned", job_id=job_id, site=site, task=task_name)
        self.send(site, TaskAssignment(task_id, job_id, task_name, model, timeout))
        return task_id

    def site_statuses(self, sites) -> dict[str, str]:
        """The status of each of `sites` that is registered."""
        return {rec.name: rec.status for rec in self.sites.get_many(set(sites))}

    def cancel_task(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def fail_site_tasks(self, site: str, reason: str, job_id: str | None = None) -> None:
        """Fail every pending task of `site` (it left or was lost), or only those of `job_id`."""
        with self._lock:
            ids = [t for t, p in self._tasks.items()
                   if p.site == site and (job_id is None or p.job_id == job_id)]
        for task_id in ids:
            with self._lock:
                pending = self._tasks.get(task_id)
            if pending is not None:
                try:
                    self._finish_task(
                        TaskResult(task_id, pending.job_id, site, ok=False, error=reason)
                    )
                except TransportError:
                    pass  # finished or cancelled meanwhile: nothing left to fail

    def add_job_listener(
        self, job_id: str, listener: Callable[[str, str, str | None], None]
    ) -> None:
        self._job_listeners[job_id] = listener

    def remove_job_listener(self, job_id: str) -> None:
        self._job_listeners.pop(job_id, None)

    def add_site_listener(self, key: str, listener: Callable[[str], None]) -> None:
        """`listener(site)` after each registration of a site (new, or back after a restart)."""
        self._site_listeners[key] = listener

    def remove_site_listener(self, key: str) -> None:
        self._site_listeners.pop(key, None)

    def start_job_on(self, site: str, start: JobStart) -> None:
        self.send(site, start)

    def end_job_on(self, site: str, job_id: str, status: str) -> None:
        with self._lock:
            ids = [t for t, p in self._tasks.items() if p.job_id == job_id and p.site == site]
            for task_id in ids:
                del self._tasks[task_id]
            self._failed_parts.pop((site, job_id), None)
        if self.sites.get(site) is not None:
            self.send(site, JobEnd(job_id, status))

    def close(self, release_workspace: bool = True) -> None:
        """Wake every poller so site loops can notice the server is going away; release the
        workspace (an owner still writing to it releases `workspace_lock` itself, last)."""
        self._closed = True
        if release_workspace:
            self.workspace_lock.release()
        if self.monitor is not None:
            self.monitor.stop()
        with self._dirty_cond:
            self._dirty_cond.notify_all()
        for rec in self.sites.all():
            with rec.cond:
                rec.cond.notify_all()

    def _drop_assignments(self, site: str, drop: Callable[[TaskAssignment], bool]) -> None:
        """Remove queued task assignments of `site` that no one should pick up any more."""
        rec = self.sites.get(site)
        if rec is None:
            return
        with rec.cond:
            for box in (rec.inbox, *rec.job_inboxes.values()):
                kept = [m for m in box if not (isinstance(m, TaskAssignment) and drop(m))]
                box.clear()
                box.extend(kept)

    def _site(self, site: str):
        rec = self.sites.get(site)
        if rec is None:
            raise NotRegistered(f"site {site!r} is not registered; call register first")
        return rec

    # ---- liveness (see runtime.server.heartbeat) ---------------------------------------------

    def _touch(self, site: str) -> SiteRecord:
        """`site` just called: it is alive (raises TransportError if it is not registered)."""
        rec = self._site(site)
        self._seen([rec])
        return rec

    def _seen(self, recs: list[SiteRecord], polling: int = 0) -> None:
        """Mark `recs` seen (and count a poll starting, +1, or ending, -1); a STALE or LOST
        site that calls is CONNECTED again. A poll ending is no such call: the server ends a
        long poll by itself, also for a site that died meanwhile."""
        with self.sites.status_lock:
            now, seq = time.time(), next_seen_seq()  # one call: one time and one seq for all
            for rec in recs:
                rec.polls_in_flight += polling
                rec.last_seen, rec.seen_seq = now, seq
                if polling >= 0 and rec.status in (SiteStatus.STALE, SiteStatus.LOST):
                    previous, rec.status = rec.status, SiteStatus.CONNECTED
                    back = {"rejoined": True} if previous == SiteStatus.LOST else {}
                    self.events.publish(
                        "site_status", site=rec.name, status=rec.status, previous=previous, **back
                    )

    def mark_site_silent(self, site: str, status: str, silent_for: float, seen_seq: int) -> bool:
        """Called by the HeartbeatMonitor: `site` has been silent `silent_for` seconds; make it
        STALE or LOST (LOST fails its pending tasks and drops their queued assignments).
        Does nothing, and returns False, if the site was heard from since the monitor looked
        (its seen_seq moved on), said goodbye, or already has that status."""
        rec = self.sites.get(site)
        if rec is None:
            return False
        with self.sites.status_lock:
            if (rec.seen_seq != seen_seq or rec.polls_in_flight > 0
                    or rec.status in (SiteStatus.DISCONNECTED, status)):
                return False
            previous, rec.status = rec.status, status
            self.events.publish("site_status", site=site, status=status, previous=previous,
                                silent_for=round(silent_for, 3))
        if status == SiteStatus.LOST:
            self.fail_site_tasks(site, f"{site} lost: no heartbeat for {silent_for:.0f}s")
            with self._lock:
                live = {t for t, p in self._tasks.items() if p.site == site}
            self._drop_assignments(site, lambda m: m.task_id not in live)
        return True


def _tail(text: str | None, lines: int = 3) -> str | None:
    if not text:
        return text
    return "\n".join(text.rstrip().splitlines()[-lines:])
