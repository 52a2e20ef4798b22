"""The console commands that wait: wait for a job, watch events, follow a log. Each returns (or
raises Cancelled) as soon as Runner.cancel() is called from another thread (Ctrl-C)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

from flshell.console import render
from runtime.admin import FINAL_STATUSES

if TYPE_CHECKING:
    from flshell.console.script import Runner

# every event but heartbeats (a few per site every few seconds, and shown by `sites` and `gpu`)
WATCH_TYPES = ("job_status", "job_deleted", "round_started", "round_completed", "task_assigned",
               "task_result", "site_status", "metrics", "log")
WAIT_POLL = 5.0  # seconds: wait_job looks at the job this often whatever events it hears


class Cancelled(Exception):
    """The runner was cancelled (Ctrl-C) while the command waited."""


def wait_for_job(r: "Runner", ref: str, timeout: float | None, poll: float = WAIT_POLL) -> dict[str, Any]:
    """The job once it has ended. Listens for its job_status events and looks again every
    `poll` seconds (events can be dropped); r.cancel() makes it raise Cancelled, at once."""
    deadline = None if timeout is None else time.monotonic() + timeout
    job_id = ref
    while True:
        stream = r.session.watch(types=["job_status"])  # subscribed before looking: no change is missed
        timer: threading.Timer | None = None
        try:
            with r.cancellable(stream.close):
                job = r.session.get_job(job_id)
                job_id = job["job_id"]
                if job["status"] in FINAL_STATUSES:
                    return job
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{render.job_label(job)} is still {job['status']} after {timeout:g} s; "
                                       f"wait_job {job['short_id']} waits again")
                timer = threading.Timer(poll if remaining is None else min(poll, remaining), stream.close)
                timer.daemon = True
                timer.start()
                for event in stream:
                    if event.type == "dropped" or event.get("job_id") == job_id:
                        break
        finally:
            if timer is not None:
                timer.cancel()
            stream.close()
        if r.cancelled:
            raise Cancelled(f"stopped waiting; {render.job_label(job)} is still {job['status']}")


def watch_events(r: "Runner", ref: str | None) -> None:
    """Print events (one line, or one JSON line, each) until cancelled; with `ref`, only that
    job's, until it ends."""
    names: dict[str, str] = {}
    with r.session.watch(types=WATCH_TYPES) as stream, r.cancellable(stream.close):
        job_id = None
        if ref is not None:
            job = r.session.get_job(ref)
            job_id, names[job["job_id"]] = job["job_id"], job["name"]
            if job["status"] in FINAL_STATUSES:
                r.stream(_status_event(job), render.status_line(job))
                return
            r.note(f"watching {render.job_label(job)}, now {job['status']}; Ctrl-C stops watching")
        for event in stream:
            if job_id is not None and event.type != "dropped" and event.get("job_id") != job_id:
                continue
            r.stream(render.event_doc(event), render.event_line(event, names, job_id))
            if job_id is None:
                continue
            if event.type == "job_status" and event.get("status") in FINAL_STATUSES:
                break
            if event.type == "dropped":  # its end may be among the dropped events
                job = r.session.get_job(job_id)
                if job["status"] in FINAL_STATUSES:
                    r.stream(_status_event(job), render.status_line(job))
                    break


def _status_event(job: dict[str, Any]) -> dict[str, Any]:
    return {"seq": None, "ts": time.time(), "type": "job_status", "job_id": job["job_id"], "name": job.get("name"),
            "status": job.get("status"), "reason": job.get("reason")}


def follow_log(r: "Runner", ref: str, site: str | None, lines: int) -> Iterator[str]:
    """Session.tail_log(follow=True), cancellable: r.cancel() closes the stream at once."""
    with r.session.tail_log(ref, site, lines=lines, follow=True) as stream, r.cancellable(stream.close):
        yield from stream
