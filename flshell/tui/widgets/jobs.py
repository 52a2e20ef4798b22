"""The Jobs table: id, name, status, rounds with a progress bar, sites, start, duration;
sortable by clicking a header, filtered by `/`."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from flshell.tui import format as fmt
from flshell.tui.state import FederationState
from flshell.tui.widgets.tables import SyncTable

STATUS_CLASSES = {s: f"jobs--{s.lower()}" for s in
                  ("SUBMITTED", "WAITING", "RUNNING", "COMPLETED", "FAILED", "ABORTED")}


def job_duration(job: dict[str, Any], now: float) -> float | None:
    start = job.get("started_at")
    if not start:
        return None
    return (job.get("ended_at") or now) - start


SORT_KEYS: dict[str, Callable[[dict[str, Any], float], Any]] = {
    "id": lambda j, now: j["job_id"],
    "name": lambda j, now: (j.get("name") or "").lower(),
    "status": lambda j, now: j.get("status") or "",
    "round": lambda j, now: fmt.rounds_done(j)[0] or 0,
    "sites": lambda j, now: len(j.get("sites") or ()),
    "started": lambda j, now: -(j.get("started_at") or 0),
    "duration": lambda j, now: job_duration(j, now) or 0,
}


class JobsTable(SyncTable):
    COLUMNS = (("id", "ID"), ("name", "Name"), ("status", "Status"), ("round", "Round"),
               ("sites", "Sites"), ("started", "Started"), ("duration", "Time"))
    COMPONENT_CLASSES: ClassVar[set[str]] = set(STATUS_CLASSES.values()) | {"jobs--bar"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sort_by: str | None = None  # None: newest first
        self.reverse = False
        self.filter = ""

    def toggle_sort(self, column: str) -> None:
        if self.sort_by == column:
            self.reverse = not self.reverse
        else:
            self.sort_by, self.reverse = column, False

    def show(self, state: FederationState) -> None:
        now = state.clock()
        jobs = state.job_list()
        if self.filter:
            needle = self.filter.lower()
            jobs = [j for j in jobs if needle in " ".join(
                (j["job_id"], j.get("name") or "", j.get("status") or "")).lower()]
        if self.sort_by in SORT_KEYS:
            key = SORT_KEYS[self.sort_by]
            jobs.sort(key=lambda j: key(j, now), reverse=self.reverse)
        self.sync([(j["job_id"], self.cells(j, now)) for j in jobs])

    @staticmethod
    def cells(job: dict[str, Any], now: float) -> tuple[Any, ...]:
        status = job.get("status") or "?"
        started = job.get("started_at")
        return (
            job.get("short_id") or job["job_id"][:8],
            job.get("name") or "?",
            (status, STATUS_CLASSES.get(status, "jobs--submitted")),
            [(fmt.round_bar(job, 6), "jobs--bar"), (" " + fmt.round_label(job), None)],
            str(len(job.get("sites") or ())),
            fmt.age(now - started) + " ago" if started else "-",
            fmt.duration(job_duration(job, now)),
        )
