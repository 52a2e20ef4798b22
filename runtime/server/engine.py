"""The server engine: site registry, per-site message queues, task/result matching, jobs.

It implements `FLHandler`, the site-facing calls any transport delivers to, and the
server-internal calls that job runners and controllers use to hand out tasks.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runtime.model import FLModel
from runtime.server.events import EventBus
from runtime.server.sites import SiteRegistry, SiteStatus
from runtime.transport.base import (
    JobEnd,
    JobStart,
    SiteMessage,
    TaskAssignment,
    TaskResult,
    TransportError,
)


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
    ) -> None:
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.events = events or EventBus()
        self.heartbeat_interval = heartbeat_interval
        self.sites = SiteRegistry()
        self._lock = threading.Lock()
        self._tasks: dict[str, _PendingTask] = {}
        self._job_listeners: dict[str, Callable[[str, str, str | None], None]] = {}
        self._metric_sinks: dict[str, Callable[[str, list], None]] = {}
        self._closed = False
        self._dirty: dict[str, None] = {}  # sites with queued messages, in arrival order
        self._dirty_cond = threading.Condition()

    # ---- FLHandler: calls that arrive from sites --------------------------------------------

    def register(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        if not site or not isinstance(site, str):
            raise TransportError(f"invalid site name {site!r}")
        rec, new = self.sites.upsert(site, info)
        self.events.publish("site_status", site=site, status=rec.status, new=new)
        return {"heartbeat_interval": self.heartbeat_interval}

    def heartbeat(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        rec = self._site(site)
        rec.last_seen = time.time()
        rec.info.update(info)
        if rec.status != SiteStatus.CONNECTED:
            rec.status = SiteStatus.CONNECTED
            self.events.publish("site_status", site=site, status=rec.status)
        self.events.publish("heartbeat", site=site, info=info)
        return {"heartbeat_interval": self.heartbeat_interval}

    def poll(self, site: str, timeout: float) -> SiteMessage | None:
        rec = self._site(site)
        with rec.cond:
            if not rec.inbox and timeout > 0:
                rec.cond.wait_for(lambda: rec.inbox or self._closed, timeout)
            rec.last_seen = time.time()
            if rec.inbox:
                return rec.inbox.popleft()
        if self._closed:
            raise TransportError("the server is shutting down")
        return None

    def poll_many(self, sites: set[str], timeout: float) -> list[tuple[str, SiteMessage]]:
        """Messages queued for any of `sites` (each site's in order); waits up to `timeout`."""
        out: list[tuple[str, SiteMessage]] = []
        with self._dirty_cond:
            if not any(s in sites for s in self._dirty) and timeout > 0 and not self._closed:
                self._dirty_cond.wait_for(
                    lambda: self._closed or any(s in sites for s in self._dirty), timeout
                )
            ready = [s for s in self._dirty if s in sites]
            for s in ready:
                del self._dirty[s]
            if not ready and self._closed:
                raise TransportError("the server is shutting down")
        for site in ready:
            rec = self._site(site)
            with rec.cond:
                rec.last_seen = time.time()
                while rec.inbox:
                    out.append((site, rec.inbox.popleft()))
        return out

    def submit_result(self, result: TaskResult) -> None:
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
        self._site(site)
        listener = self._job_listeners.get(job_id)
        if listener is not None:
            listener(site, state, detail)

    def log_metrics(self, site: str, job_id: str, records: list[dict[str, Any]]) -> None:
        self._site(site)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise TransportError("metric records must be a list of objects")
        sink = self._metric_sinks.get(job_id)
        if sink is not None:
            sink(site, records)
        self.events.publish("metrics", job_id=job_id, site=site, count=len(records))

    def add_metric_sink(self, job_id: str, sink: Callable[[str, list], None]) -> None:
        self._metric_sinks[job_id] = sink

    def remove_metric_sink(self, job_id: str) -> None:
        self._metric_sinks.pop(job_id, None)

    def goodbye(self, site: str) -> None:
        rec = self.sites.get(site)
        if rec is None:
            return
        rec.status = SiteStatus.DISCONNECTED
        self.events.publish("site_status", site=site, status=rec.status)
        self.fail_site_tasks(site, f"{site} disconnected")

    # ---- server-internal calls ---------------------------------------------------------------

    def send(self, site: str, message: SiteMessage) -> None:
        rec = self._site(site)
        with rec.cond:
            rec.inbox.append(message)
            rec.cond.notify()
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
        self.events.publish("task_assigned", job_id=job_id, site=site, task=task_name)
        self.send(site, TaskAssignment(task_id, job_id, task_name, model, timeout))
        return task_id

    def cancel_task(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def fail_site_tasks(self, site: str, reason: str) -> None:
        """Fail every pending task of `site` (it left or was lost)."""
        with self._lock:
            ids = [t for t, p in self._tasks.items() if p.site == site]
        for task_id in ids:
            with self._lock:
                pending = self._tasks.get(task_id)
            if pending is not None:
                self.submit_result(
                    TaskResult(task_id, pending.job_id, site, ok=False, error=reason)
                )

    def add_job_listener(
        self, job_id: str, listener: Callable[[str, str, str | None], None]
    ) -> None:
        self._job_listeners[job_id] = listener

    def remove_job_listener(self, job_id: str) -> None:
        self._job_listeners.pop(job_id, None)

    def start_job_on(self, site: str, start: JobStart) -> None:
        self.send(site, start)

    def end_job_on(self, site: str, job_id: str, status: str) -> None:
        with self._lock:
            ids = [t for t, p in self._tasks.items() if p.job_id == job_id and p.site == site]
            for task_id in ids:
                del self._tasks[task_id]
        if self.sites.get(site) is not None:
            self.send(site, JobEnd(job_id, status))

    def close(self) -> None:
        """Wake every poller so site loops can notice the server is going away."""
        self._closed = True
        with self._dirty_cond:
            self._dirty_cond.notify_all()
        for rec in self.sites.all():
            with rec.cond:
                rec.cond.notify_all()

    def _site(self, site: str):
        rec = self.sites.get(site)
        if rec is None:
            raise TransportError(f"site {site!r} is not registered; call register first")
        return rec


def _tail(text: str | None, lines: int = 3) -> str | None:
    if not text:
        return text
    return "\n".join(text.rstrip().splitlines()[-lines:])
