"""The job screen (Enter on a job): its rounds, metrics over rounds, its sites and their logs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from textual import work
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from runtime.admin.errors import AdminError

from flshell.tui import format as fmt
from flshell.tui.state import Changes
from flshell.tui.widgets.job_detail import JobSitesTable, MetricsPlot, RoundsTable, merge_rounds
from flshell.tui.widgets.jobs import job_duration
from flshell.tui.widgets.log_tail import SERVER_TAB, LogTail
from flshell.tui.widgets.status import Banner, StatusLine

if TYPE_CHECKING:
    from flshell.tui.app import FlshellTui

RELOAD_AT_MOST = 1.0  # seconds between two get_job calls for this screen


class JobScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", tooltip="back to the previous screen"),
                Binding("tab", "next_log", "Next log", show=False, tooltip="the next log: server, then each site"),
                # End follows the log whatever has the focus (a table would take End for itself)
                Binding("end", "follow_log", "Follow log", show=False, priority=True,
                        tooltip="follow the log again (scrolling up pauses it)")]
    KEYS = (("click", "a log tab: that log"),)

    def __init__(self, job_id: str, log: str | None = None) -> None:
        super().__init__()
        self.job_id = job_id
        self.first_log = log
        self.detail: dict[str, Any] = {}
        self._loading = False
        self._loaded_at = 0.0
        self._again = False

    @property
    def app_(self) -> "FlshellTui":
        return self.app  # type: ignore[return-value]

    def job(self) -> dict[str, Any]:
        return {**self.detail, **self.app_.state.jobs.get(self.job_id, {})}

    def compose(self):
        job = self.job()
        with Vertical(id="top"):
            yield StatusLine(id="status")
            yield Banner(id="banner")
        yield Static(id="job-header")
        with Container(id="job-top"):
            with Vertical(id="rounds-panel", classes="panel") as rounds:
                rounds.border_title = "Rounds"
                yield RoundsTable(id="rounds")
            with Vertical(id="job-side"):
                plot = MetricsPlot(id="metrics", classes="panel")
                plot.border_title = "Metrics over rounds"
                yield plot
                with Vertical(id="job-sites-panel", classes="panel") as sites:
                    sites.border_title = "Sites"
                    yield JobSitesTable(id="job-sites")
        tail = LogTail(self.app_.source, self.job_id, list(job.get("sites") or ()), id="logs", classes="panel")
        tail.border_title = "Log"
        yield tail
        yield Footer()

    def on_mount(self) -> None:
        self.set_class(self.app_.connection == "disconnected", "-offline")
        self.app_.changed.subscribe(self, self._changed)
        self.app_.ticked.subscribe(self, lambda _: self.show())
        self.query_one(RoundsTable).focus()
        self.show()
        self.reload()
        self.query_one(LogTail).open(self.first_log or SERVER_TAB)

    def on_resize(self) -> None:
        self.show()  # the sites table's columns follow the width

    def selected_job(self) -> dict[str, Any] | None:
        return self.job() if self.job_id in self.app_.state.jobs else None

    def _changed(self, changes: Changes) -> None:
        if self.job_id in changes.jobs:
            self.reload()
        self.show()

    def reload(self) -> None:
        """get_job again (rounds and details), at most once a second."""
        if self._loading:
            self._again = True
            return
        self._loading = True
        self._load(max(0.0, self._loaded_at + RELOAD_AT_MOST - time.monotonic()))

    @work(thread=True, group="job-detail")
    def _load(self, wait: float) -> None:
        time.sleep(wait)
        try:
            detail = self.app_.source.get_job(self.job_id)
        except AdminError as e:
            detail = {"error": str(e)}
        try:
            self.app.call_from_thread(self._loaded, detail)
        except RuntimeError:  # the app has ended meanwhile
            pass

    def _loaded(self, detail: dict[str, Any]) -> None:
        self._loading = False
        if not self.is_attached:  # the user went back meanwhile
            return
        self._loaded_at = time.monotonic()
        if "error" not in detail:
            self.detail = detail
        self.show()
        if self._again:
            self._again = False
            self.reload()

    def show(self) -> None:
        state = self.app_.state
        job = self.job()
        rounds = merge_rounds(job, state.round_records.get(self.job_id, {}))
        self.query_one("#job-header", Static).update(self._header(job, state.clock()))
        self.query_one(RoundsTable).show(rounds)
        self.query_one(MetricsPlot).show(rounds)
        sites = self.query_one(JobSitesTable)
        sites.set_compact(self.has_class("-narrow"))
        sites.show(state, job, rounds)
        self.query_one(LogTail).set_sites(list(job.get("sites") or ()))

    @staticmethod
    def _header(job: dict[str, Any], now: float) -> str:
        if not job:
            return "loading…"
        status = job.get("status") or "?"
        done, total = fmt.rounds_done(job)
        progress = f"{fmt.bar(done / total, 12)} {done}/{total} rounds" if total and done is not None else ""
        line = (f"{job.get('name') or '?'}  {job['job_id'][:8]}  {status}  {progress}  "
                f"time {fmt.duration(job_duration(job, now))}")
        details = [f"id {job['job_id']}"]
        if job.get("reason"):
            details.append(str(job["reason"]))
        failures = job.get("failure_details") or {}
        details += [f"{k}: {v}" for k, v in list(failures.items())[:3]]
        return line + "\n" + " │ ".join(details)

    def action_next_log(self) -> None:
        self.query_one(LogTail).next_source()

    def action_follow_log(self) -> None:
        self.query_one(LogTail).follow()
