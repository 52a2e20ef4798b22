"""The site screen's parts: host CPU / memory history rows, the heartbeat summary, its jobs table."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from flshell.tui import format as fmt
from flshell.tui.state import FederationState
from flshell.tui.widgets.jobs import STATUS_CLASSES, JobsTable
from flshell.tui.widgets.sites import task_label
from flshell.tui.widgets.tables import SyncTable

LEVELS = ("light", "moderate", "heavy", "none")
GIB = float(1 << 30)
MAX_SPARK = 120  # samples drawn at most (HOST_HISTORY)


class HostRow(Widget):
    """`CPU ▁▂▃▅▇█  37%`: a sparkline on a fixed 0-100 scale (as the GPUs') and the last value;
    the CPU and memory rows are as wide, so their samples line up."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"host--{lv}" for lv in LEVELS} | {"host--label"}
    DEFAULT_CSS = "HostRow { height: 1; }"

    def __init__(self, label: str, levels: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label, self.levels = label, levels
        self.values: list[float] = []

    def show(self, values: list[float]) -> None:
        if values != self.values:
            self.values = list(values)
            self.refresh()

    def _style(self, name: str) -> Any:
        return self.get_component_rich_style(name, partial=True)

    def render(self) -> Text:
        width = self.size.width or 60
        last = self.values[-1] if self.values else None
        level = fmt.level(last, self.levels)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{self.label:<4}", self._style("host--label"))
        text.append(fmt.spark(self.values, max(0, min(MAX_SPARK, width - 10))), self._style(f"host--{level}"))
        text.append(f"{fmt.percent(last):>5}", self._style(f"host--{level}"))
        return text


def host_rows(state: FederationState, site: str) -> tuple[list[float], list[float], str]:
    """A site's host from its heartbeats: CPU values, memory values, and a line of detail."""
    series = list(state.host.get(site, ()))
    host = ((state.sites.get(site) or {}).get("info") or {}).get("host") or {}
    cpus = [c for _, c, _ in series if c is not None]
    mems = [m for _, _, m in series if m is not None]
    used, total = host.get("mem_used"), host.get("mem_total")
    detail = " · ".join(p for p in (
        f"{host['cpu_count']} cores" if host.get("cpu_count") else "",
        "load " + " ".join(f"{x:g}" for x in host["load_avg"]) if host.get("load_avg") else "",
        f"mem {used / GIB:.1f}/{total / GIB:.1f} GiB" if used is not None and total else "",
        f"{len(series)} samples" if series else "no host load reported yet") if p)
    return cpus, mems, detail


def beats_text(state: FederationState, site: str) -> str:
    """Heartbeats: the last one, how often they come, how many were heard; then the site's
    status and its changes seen since the TUI opened, newest first."""
    now = state.clock()
    record = state.sites.get(site) or {}
    status = record.get("status") or "?"
    interval = state.beat_interval(site)
    heard = len(state.beat_times.get(site, ()))
    lines = [f"last beat {fmt.age(state.age(site))} ago"
             + (f", every {fmt.duration(interval)}" if interval is not None else ""),
             f"{heard} heard since the TUI opened"]
    if record.get("registered_at"):
        since = now - (record["registered_at"] + state.skew)
        lines.append(f"registered {fmt.age(since)} ago")
    if record.get("queued"):
        lines.append(f"{record['queued']} messages queued for it")
    for at, changed in reversed(list(state.status_log.get(site, ()))):
        lines.append(f"{changed} since the TUI opened" if at is None else f"{changed} {fmt.age(now - at)} ago")
    if not state.status_log.get(site):
        lines.append(status)
    return "\n".join(lines)


class BeatsView(Static):
    """The heartbeat summary and the site's status changes (text from `beats_text`)."""


class SiteJobsTable(SyncTable):
    """The jobs that ran on the site: status and rounds as in the Jobs table, and the last task
    the server gave this site for each, with how it ended and how long it took."""

    COLUMNS = (("id", "ID"), ("name", "Name"), ("status", "Status"), ("round", "Round"),
               ("task", "Task here"), ("started", "Started"))
    COMPONENT_CLASSES: ClassVar[set[str]] = set(STATUS_CLASSES.values()) | {"jobs--bar"}

    def show(self, state: FederationState, site: str) -> None:
        now = state.clock()
        rows = []
        for job in state.jobs_of_site(site):
            cells = JobsTable.cells(job, now)
            task = state.tasks.get((job["job_id"], site))
            rows.append((job["job_id"], (cells[0], cells[1], cells[2], cells[3],
                                         "-" if task is None else task_label(task, seconds=True), cells[5])))
        self.sync(rows)
