"""The main screen: Jobs, Sites and GPUs panels under the status line, the footer's keys below."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import on
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input

from flshell.tui.state import Changes
from flshell.tui.widgets.gpus import GpuPanel
from flshell.tui.widgets.jobs import JobsTable
from flshell.tui.widgets.sites import SitesTable
from flshell.tui.widgets.status import Banner, StatusLine

if TYPE_CHECKING:
    from flshell.tui.app import FlshellTui


class MainScreen(Screen):
    BINDINGS = [Binding("slash", "filter", "Filter", tooltip="filter the focused table (part of a name, id or status)"),
                Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="clear the filter"),
                Binding("tab", "next_table", "Next table", show=False, tooltip="the other table (jobs / sites)"),
                Binding("o", "sort", "Sort", show=False, tooltip="sort by the next column (or click a header)"),
                Binding("O", "sort(True)", "Reverse sort", show=False, tooltip="reverse the order")]
    KEYS = (("Enter", "on a job: its job screen; on a site: its site screen"),)

    def compose(self):
        with Vertical(id="top"):
            yield StatusLine(id="status")
            yield Banner(id="banner")
        with Container(id="body"):
            with Vertical(id="jobs-panel", classes="panel") as jobs:
                jobs.border_title = "Jobs"
                yield JobsTable(id="jobs")
            with Container(id="lower"):
                with Vertical(id="sites-panel", classes="panel") as sites:
                    sites.border_title = "Sites"
                    yield SitesTable(id="sites")
                gpus = GpuPanel(id="gpus", classes="panel")
                gpus.border_title = "GPUs"
                yield gpus
        yield Input(id="filter", placeholder="filter: part of an id, name or status (Enter keeps it, Esc clears)")
        yield Footer()

    @property
    def app_(self) -> "FlshellTui":
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.set_class(self.app_.connection == "disconnected", "-offline")
        self.app_.changed.subscribe(self, self._changed)
        self.app_.ticked.subscribe(self, lambda _: self.show())
        self.query_one(JobsTable).focus()
        self.show()

    def _changed(self, changes: Changes) -> None:
        self.show(gpus=bool(changes.gpus or changes.sites or changes.beats))

    def show(self, gpus: bool = True) -> None:
        state = self.app_.state
        jobs, sites = self.query_one(JobsTable), self.query_one(SitesTable)
        jobs.show(state)
        sites.show(state)
        if gpus:
            self.query_one(GpuPanel).show(state)
        self._titles()

    def _titles(self) -> None:
        state = self.app_.state
        jobs, sites = self.query_one(JobsTable), self.query_one(SitesTable)
        running = sum(1 for j in state.jobs.values() if j.get("status") == "RUNNING")
        self.query_one("#jobs-panel").border_title = "Jobs" + _how(jobs)
        self.query_one("#jobs-panel").border_subtitle = f"{running} running / {len(state.jobs)}"
        self.query_one("#sites-panel").border_title = "Sites" + _how(sites)
        connected = sum(1 for s in state.sites.values() if s.get("status") == "CONNECTED")
        self.query_one("#sites-panel").border_subtitle = f"{connected}/{len(state.sites)} connected"

    def selected_job(self) -> dict[str, Any] | None:
        key = self.query_one(JobsTable).selected_key
        return self.app_.state.jobs.get(key) if key else None

    # ---- tables ----------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#jobs")
    def _open_job(self, event: DataTable.RowSelected) -> None:
        self.app_.open_job(str(event.row_key.value))

    @on(DataTable.RowSelected, "#sites")
    def _open_site(self, event: DataTable.RowSelected) -> None:
        self.app_.open_site(str(event.row_key.value))

    @on(DataTable.RowHighlighted, "#jobs")
    def _job_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.app_.refresh_bindings()

    @on(DataTable.HeaderSelected)
    def _sort(self, event: DataTable.HeaderSelected) -> None:
        table = event.data_table
        if isinstance(table, (JobsTable, SitesTable)):
            table.toggle_sort(str(event.column_key.value))
            table.show(self.app_.state)
            self._titles()

    def action_sort(self, reverse: bool = False) -> None:
        """Sort the focused table by its next column (`o`), or reverse the order (`O`)."""
        table = self.query_one(SitesTable) if self.query_one(SitesTable).has_focus else self.query_one(JobsTable)
        if reverse:
            table.reverse = not table.reverse
        else:
            keys = [k for k, _ in table.COLUMNS]
            table.sort_by = keys[(keys.index(table.sort_by) + 1) % len(keys)] if table.sort_by in keys else keys[0]
            table.reverse = False
        table.show(self.app_.state)
        self._titles()

    def action_next_table(self) -> None:
        jobs, sites = self.query_one(JobsTable), self.query_one(SitesTable)
        (sites if jobs.has_focus else jobs).focus()

    # ---- filter ----------------------------------------------------------------------------

    def _filtered_table(self) -> JobsTable | SitesTable:
        sites = self.query_one(SitesTable)
        return sites if getattr(self, "_filter_target", None) == "sites" else self.query_one(JobsTable)

    def action_filter(self) -> None:
        self._filter_target = "sites" if self.query_one(SitesTable).has_focus else "jobs"
        field = self.query_one("#filter", Input)
        field.value = self._filtered_table().filter
        field.add_class("-open")
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        table = self._filtered_table()
        table.filter = event.value.strip()
        table.show(self.app_.state)
        self._titles()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        self.query_one("#filter", Input).remove_class("-open")
        self._filtered_table().focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        table = self._filtered_table()
        field.value = ""
        table.filter = ""
        field.remove_class("-open")
        table.show(self.app_.state)
        table.focus()
        self._titles()


def _how(table: JobsTable | SitesTable) -> str:
    """` (by name ↓, filter: abc)`: how the table is ordered and filtered, when it is."""
    parts = []
    if table.sort_by is not None:
        parts.append(f"by {dict(table.COLUMNS)[table.sort_by].lower()} {'↓' if table.reverse else '↑'}")
    if table.filter:
        parts.append(f"filter: {table.filter}")
    return f" ({', '.join(parts)})" if parts else ""
