"""The job screen's parts: the rounds table, a sparkline per metric over rounds, the job's sites."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Sparkline

from flshell.tui import format as fmt
from flshell.tui.state import FederationState
from flshell.tui.widgets.sites import FRESHNESS, site_cells
from flshell.tui.widgets.tables import SyncTable

MAX_METRICS = 4  # metric columns / plots shown; the rest are in `show_stats` on the console


def merge_rounds(job: dict[str, Any], live: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored rounds (get_job) merged with what round_completed events said (sites, seconds);
    durations of stored rounds without an event come from the recording times."""
    by_round: dict[int, dict[str, Any]] = {int(r["round"]): dict(r) for r in job.get("rounds") or ()}
    for rnd, record in live.items():
        by_round[rnd] = {**by_round.get(rnd, {}), **record}
    out = []
    previous = job.get("started_at")
    for rnd in sorted(by_round):
        r = by_round[rnd]
        if r.get("seconds") is None and previous and r.get("recorded_at"):
            r["seconds"] = r["recorded_at"] - previous
        previous = r.get("recorded_at") or previous
        out.append(r)
    return out


def metric_names(rounds: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in rounds:
        for k, v in (r.get("metrics") or {}).items():
            if k not in names and isinstance(v, (int, float)) and not isinstance(v, bool):
                names.append(k)
    return names[:MAX_METRICS]


class RoundsTable(SyncTable):
    COLUMNS = (("round", "Round"), ("sites", "Sites"), ("seconds", "Time"))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics: list[str] = []

    def show(self, rounds: list[dict[str, Any]]) -> None:
        names = metric_names(rounds)
        if names != self.metrics:
            for key in self.metrics:
                self.remove_column(key)
            self._order, self._cells = [], {}
            self.clear()
            for key in names:
                self.add_column(key, key=key)
            self.metrics = names
            self.COLUMNS = type(self).COLUMNS + tuple((k, k) for k in names)
        rows = []
        for r in rounds:
            ok, failed = r.get("sites_ok"), r.get("sites_failed") or []
            sites = "-" if ok is None else f"{len(ok)}/{len(ok) + len(failed) + len(r.get('sites_timed_out') or [])}"
            total = r.get("total_rounds")
            cells = [f"{r['round'] + 1}" + (f"/{total}" if total else ""), sites, fmt.duration(r.get("seconds"))]
            cells += [fmt.metric((r.get("metrics") or {}).get(k, "-")) for k in names]
            rows.append((str(r["round"]), cells))
        rows.reverse()  # the latest round first
        self.sync(rows)


class MetricsPlot(VerticalScroll):
    """For each numeric metric: its name, last / min / max, and a sparkline over rounds."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: dict[str, tuple[Label, Sparkline]] = {}

    def compose(self):
        yield Label("no metrics yet", id="metric-none")

    def show(self, rounds: list[dict[str, Any]]) -> None:
        names = metric_names(rounds)
        for name in names:
            values = [float(v) for r in rounds
                      if isinstance(v := (r.get("metrics") or {}).get(name), (int, float))]
            summary = (f"{name} {fmt.metric(values[-1])}  min {fmt.metric(min(values))} "
                       f"max {fmt.metric(max(values))}") if values else name
            if name not in self.rows:
                label, spark = Label(summary, classes="metric-name"), Sparkline(values, classes="metric-spark")
                self.rows[name] = (label, spark)
                self.mount(Vertical(label, spark, classes="metric"))
            else:
                label, spark = self.rows[name]
                label.update(summary)
                spark.data = values
        self.query_one("#metric-none").display = not names


class JobSitesTable(SyncTable):
    """The job's sites: status and heartbeat as on the main screen, the job's last task there and
    the rounds it reported in. `compact` (narrow screens) drops Status: the Beat age has the same
    freshness colour, and the rest then fits half of 80 columns."""

    WIDE = (("name", "Site"), ("status", "Status"), ("age", "Beat"), ("task", "Task"), ("rounds", "Rounds"))
    COMPACT = (("name", "Site"), ("age", "Beat"), ("task", "Task"), ("rounds", "Rounds"))
    COLUMNS = WIDE
    COMPONENT_CLASSES: ClassVar[set[str]] = {f"sites--{f}" for f in FRESHNESS}

    def set_compact(self, compact: bool) -> None:
        columns = self.COMPACT if compact else self.WIDE
        if columns == self.COLUMNS:
            return
        self.clear(columns=True)
        self._order, self._cells = [], {}
        self.COLUMNS = columns
        for key, label in columns:
            self.add_column(label, key=key)

    def show(self, state: FederationState, job: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
        keys = [k for k, _ in self.COLUMNS]
        rows = []
        for name in job.get("sites") or ():
            c = site_cells(state, name, job["job_id"])
            known = [r for r in rounds if r.get("sites_ok") is not None]  # rounds heard live
            reported = sum(1 for r in known if name in r["sites_ok"])
            values = {"name": name, "status": c["status"], "age": c["age"], "task": c["task"],
                      "rounds": f"{reported}/{len(known)}" if known else "-"}
            rows.append((name, tuple(values[k] for k in keys)))
        self.sync(rows)
