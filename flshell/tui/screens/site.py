"""The site screen (Enter on a site): its heartbeats, host CPU / memory history, jobs and GPUs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import on
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from flshell.tui import format as fmt
from flshell.tui.state import Changes
from flshell.tui.widgets.gpus import GpuPanel
from flshell.tui.widgets.site_detail import BeatsView, HostRow, SiteJobsTable, beats_text, host_rows
from flshell.tui.widgets.status import Banner, StatusLine

if TYPE_CHECKING:
    from flshell.tui.app import FlshellTui


class SiteScreen(Screen):
    """Everything the TUI knows of one site. Host history is the TUI's own (from the heartbeats
    it received since it opened: the server keeps none); GPU history comes from the server."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back", tooltip="back to the previous screen"),
                Binding("tab", "focus_next", "Next", show=False, tooltip="next panel")]
    KEYS = (("Enter", "open the selected job"),)

    def __init__(self, site: str) -> None:
        super().__init__()
        self.site = site

    @property
    def app_(self) -> "FlshellTui":
        return self.app  # type: ignore[return-value]

    def compose(self):
        with Vertical(id="top"):
            yield StatusLine(id="status")
            yield Banner(id="banner")
        yield Static(id="site-header")
        with Container(id="site-top"):
            beats = BeatsView(id="beats", classes="panel")
            beats.border_title = "Heartbeats"
            yield beats
            with Vertical(id="host-panel", classes="panel") as host:
                host.border_title = "Host"
                host.border_subtitle = "from heartbeats since the TUI opened"
                yield HostRow("CPU", fmt.UTIL_LEVELS, id="host-cpu")
                yield HostRow("Mem", fmt.MEM_LEVELS, id="host-mem")
                yield Static(id="host-detail")
        with Container(id="site-lower"):
            with Vertical(id="site-jobs-panel", classes="panel") as jobs:
                jobs.border_title = "Jobs"
                yield SiteJobsTable(id="site-jobs")
            gpus = GpuPanel(site=self.site, id="site-gpus", classes="panel")
            gpus.border_title = "GPUs"
            yield gpus
        yield Footer()

    def on_mount(self) -> None:
        self.set_class(self.app_.connection == "disconnected", "-offline")
        self.app_.changed.subscribe(self, self._changed)
        self.app_.ticked.subscribe(self, lambda _: self.show())
        self.query_one(SiteJobsTable).focus()
        self.show()

    def _changed(self, changes: Changes) -> None:
        if self.site in changes.sites | changes.beats or changes.jobs or changes.gpus:
            self.show()

    def show(self) -> None:
        state = self.app_.state
        self.query_one("#site-header", Static).update(self._header())
        self.query_one(BeatsView).update(beats_text(state, self.site))
        cpus, mems, detail = host_rows(state, self.site)
        self.query_one("#host-cpu", HostRow).show(cpus)
        self.query_one("#host-mem", HostRow).show(mems)
        self.query_one("#host-detail", Static).update(detail)
        self.query_one(SiteJobsTable).show(state, self.site)
        self.query_one(GpuPanel).show(state)
        running = sum(1 for j in state.jobs_of_site(self.site) if j.get("status") == "RUNNING")
        self.query_one("#site-jobs-panel").border_subtitle = \
            f"{running} running / {len(self.query_one(SiteJobsTable).keys)}"

    def _header(self) -> str:
        state = self.app_.state
        record = state.sites.get(self.site)
        if record is None:
            return f"{self.site}  not known to the server (any more)"
        info = record.get("info") or {}
        gpus = len(info.get("gpus") or ())
        line = (f"{self.site}  {record.get('status') or '?'}  last beat {fmt.age(state.age(self.site))} ago"
                f"  │ {len(state.jobs_of_site(self.site))} jobs │ "
                + (f"{gpus} GPU" + ("" if gpus == 1 else "s") if gpus else "no GPU"))
        note = info.get("gpu_note")
        detail = f"no GPU: {note}" if not gpus and note and note != "no GPU" else \
            ("polling for tasks" if record.get("polling") else "")
        return line + ("\n" + detail if detail else "")

    def selected_job(self) -> dict[str, Any] | None:
        key = self.query_one(SiteJobsTable).selected_key
        return self.app_.state.jobs.get(key) if key else None

    @on(DataTable.RowSelected, "#site-jobs")
    def _open_job(self, event: DataTable.RowSelected) -> None:
        self.app_.open_job(str(event.row_key.value))

    @on(DataTable.RowHighlighted, "#site-jobs")
    def _job_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.app_.refresh_bindings()
