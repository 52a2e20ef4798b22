"""The Sites table: status, heartbeat age styled by freshness, current job, task and round,
CPU and memory of the site's host."""

from __future__ import annotations

from typing import Any, ClassVar

from flshell.tui import format as fmt
from flshell.tui.state import FederationState, SiteTask
from flshell.tui.widgets.tables import SyncTable

FRESHNESS = ("fresh", "late", "stale", "lost", "gone")


def task_label(task: SiteTask, seconds: bool = False) -> str:
    """`train running`, `train ok`, `train failed` (in words: an ellipsis reads as a cut cell);
    with `seconds`, how long a finished task took."""
    if task.ok is None:
        return f"{task.task} running"
    took = f" {fmt.duration(task.seconds)}" if seconds and task.seconds is not None else ""
    return f"{task.task} {'ok' if task.ok else 'failed'}{took}"


def site_cells(state: FederationState, name: str, job_id: str | None = None) -> dict[str, Any]:
    """Display values of one site (for `job_id`, or the first job it runs)."""
    site = state.sites.get(name, {})
    info = site.get("info") or {}
    status = site.get("status") or "?"
    age = state.age(name)
    fresh = fmt.freshness(status, age)
    jobs = state.site_jobs(name)
    job_id = job_id or (jobs[0] if jobs else None)
    job = state.jobs.get(job_id or "")
    task = state.tasks.get((job_id, name)) if job_id else None
    task_text = "-" if task is None else task_label(task)
    host = info.get("host") or {}
    return {
        "status": (status, f"sites--{fresh}"),
        "age": (fmt.age(age), f"sites--{fresh}"),
        "job": "-" if job_id is None else (job_id[:8] + (f" +{len(jobs) - 1}" if len(jobs) > 1 else "")),
        "task": task_text,
        "round": fmt.round_label(job) if job else "-",
        "cpu": fmt.percent(host.get("cpu_percent")),
        "mem": fmt.percent(fmt.host_mem_percent(host)),
    }


class SitesTable(SyncTable):
    COLUMNS = (("name", "Site"), ("status", "Status"), ("age", "Beat"), ("job", "Job"),
               ("task", "Task"), ("round", "Round"), ("cpu", "CPU"), ("mem", "Mem"))
    COMPONENT_CLASSES: ClassVar[set[str]] = {f"sites--{f}" for f in FRESHNESS}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter = ""
        self.sort_by: str | None = None
        self.reverse = False

    def toggle_sort(self, column: str) -> None:
        if self.sort_by == column:
            self.reverse = not self.reverse
        else:
            self.sort_by, self.reverse = column, False

    def show(self, state: FederationState) -> None:
        names = sorted(state.sites)
        if self.filter:
            needle = self.filter.lower()
            names = [n for n in names if needle in n.lower()
                     or needle in (state.sites[n].get("status") or "").lower()]
        rows = []
        for name in names:
            c = site_cells(state, name)
            rows.append((name, (name, c["status"], c["age"], c["job"], c["task"], c["round"], c["cpu"], c["mem"])))
        if self.sort_by == "age":
            rows.sort(key=lambda r: state.age(r[0]) or 0.0, reverse=self.reverse)
        elif self.sort_by is not None:
            index = [k for k, _ in self.COLUMNS].index(self.sort_by)
            rows.sort(key=lambda r: _plain(r[1][index]), reverse=self.reverse)
        elif self.reverse:
            rows.reverse()
        self.sync(rows)


def _plain(cell: Any) -> str:
    return cell[0] if isinstance(cell, tuple) else str(cell)
