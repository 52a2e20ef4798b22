"""The job lifecycle in one place: its states, the transitions allowed between them, and
`JobLifecycle`, the one way a job's status changes (persisted by the store first, then told to
everyone else as a `job_status` event, in that order, under one lock).

    SUBMITTED -> WAITING (for a run slot, sites, GPUs; then "deploying to N sites")
              -> RUNNING -> COMPLETED | FAILED | ABORTED

A job can fail or be aborted from any unfinished state. WAITING -> WAITING and RUNNING ->
RUNNING change only the reason (a new wait; "resumed after round N" when a restarted server
picks a job up again). A final state is final.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from runtime.server.events import EventBus
    from runtime.server.job_store import JobRecord, JobStore


class JobStatus:
    SUBMITTED = "SUBMITTED"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    FINAL = frozenset({COMPLETED, FAILED, ABORTED})
    UNFINISHED = (SUBMITTED, WAITING, RUNNING)
    ALL = (SUBMITTED, WAITING, RUNNING, COMPLETED, FAILED, ABORTED)


_ENDS = frozenset({JobStatus.FAILED, JobStatus.ABORTED})

# status -> the statuses it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.SUBMITTED: frozenset({JobStatus.WAITING}) | _ENDS,
    JobStatus.WAITING: frozenset({JobStatus.WAITING, JobStatus.RUNNING}) | _ENDS,
    JobStatus.RUNNING: frozenset({JobStatus.RUNNING, JobStatus.COMPLETED}) | _ENDS,
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.ABORTED: frozenset(),
}


class JobLifecycle:
    """Moves stored jobs between states. `move()` is the only writer of a job's status: the
    store checks the transition and records it, then the `job_status` event goes out, so a
    watcher that sees an event finds the store already saying so, and every watcher sees one
    job's changes in the order they happened."""

    def __init__(self, store: "JobStore", events: "EventBus",
                 on_final: Callable[["JobRecord"], None] | None = None) -> None:
        """`on_final(record)`: called once a job has ended (the scheduler frees its slot)."""
        self.store = store
        self.events = events
        self.on_final = on_final
        self._lock = threading.Lock()

    def submitted(self, job_id: str, **fields: Any) -> "JobRecord":
        """Announce a job the store has just taken in (SUBMITTED)."""
        with self._lock:
            rec = self.store.get(job_id)
            self.events.publish("job_status", job_id=rec.job_id, name=rec.name, status=rec.status,
                                reason=None, **fields)
            return rec

    def move(self, job_id: str, status: str, reason: str | None = None, *,
             sites: list[str] | None = None, **fields: Any) -> "JobRecord":
        """Move the job to `status` with `reason` (JobStoreError on a transition TRANSITIONS
        forbids); the same status with the same reason again changes nothing and says nothing.
        `sites` replaces the record's sites; `fields` go into the event only."""
        with self._lock:
            rec = self.store.get(job_id)
            if rec.status == status and (rec.reason == reason or status not in TRANSITIONS[status]):
                return rec
            rec = self.store.set_status(rec.job_id, status, reason, sites=sites)
            self.events.publish("job_status", job_id=rec.job_id, name=rec.name, status=status,
                                reason=reason, **fields)
        if status in JobStatus.FINAL and self.on_final is not None:
            self.on_final(rec)
        return rec
