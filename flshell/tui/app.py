"""The `flshell tui` application and `make_app`, the one factory the CLI and the tests share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.signal import Signal

from runtime.admin.errors import AdminError

from flshell.tui.actions import ACTIONS, BY_ACTION, MUTATING, needs_confirmation
from flshell.tui.data import FINAL, DataSource, SessionSource
from flshell.tui.feed import EventQueue, LiveFeed
from flshell.tui.messages import (ActionDone, ActionFailed, Connected, ConnectionLost, EventsDropped,
                                  GpuSample, HeartbeatReceived, JobsUpdated, RoundCompleted,
                                  SitesUpdated, SnapshotLoaded)
from flshell.tui.screens.dialogs import ConfirmScreen, PathPrompt
from flshell.tui.screens.help import HelpScreen
from flshell.tui.screens.job import JobScreen
from flshell.tui.screens.main import MainScreen
from flshell.tui.screens.site import SiteScreen
from flshell.tui.state import Changes, FederationState

BATCH_INTERVAL = 0.15   # seconds between drains of the event queue (about 7 UI updates a second)
REFRESH = 5.0           # seconds between light reloads of jobs and sites while connected
MIN_REFRESH = 1.0


class FlshellTui(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "flshell"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    ENABLE_COMMAND_PALETTE = False  # the footer's keys are the commands
    BINDINGS = [
        *(Binding(a.key, a.action, a.label, tooltip=a.tip) for a in ACTIONS),
        Binding("r", "reload", "Reload", show=False, tooltip="reload jobs and sites now"),
        Binding("question_mark", "help", "Help", tooltip="this help: the keys of each screen"),
        Binding("q", "quit", "Quit", tooltip="quit (a `flshell sim --tui` aborts a job still running)"),
        # Ctrl-C quits as q does (Textual's default only says "press ctrl+q to quit"), from any
        # screen, a text field included: what the footer's `q Quit` promises
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="quit, as q does"),
    ]

    connection: reactive[str] = reactive("connecting")

    def __init__(self, source: DataSource, *, readonly: bool = False, refresh: float = REFRESH,
                 batch_interval: float = BATCH_INTERVAL, queue: EventQueue | None = None,
                 download_dir: str | Path = ".") -> None:
        super().__init__()
        self.source = source
        self.readonly = readonly
        self.refresh_every = max(MIN_REFRESH, refresh)
        self.batch_interval = batch_interval
        self.download_dir = str(download_dir)
        self.state = FederationState(source.clock)
        self.queue = queue if queue is not None else EventQueue()
        self.feed = LiveFeed(source, self.queue, self.post_message, handshake=True)
        self.changed: Signal[Changes] = Signal(self, "changed")
        self.ticked: Signal[None] = Signal(self, "ticked")
        self.attempt = 0
        self.last_error = ""
        self.retry_at = 0.0  # time.monotonic() of the next reconnect attempt
        self.batches = 0
        self._reloading = False

    # ---- lifecycle -------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self._run_feed()
        self.set_interval(self.batch_interval, self.drain)
        self.set_interval(1.0, self._tick)
        self.set_interval(self.refresh_every, self.reload)

    @work(thread=True, group="feed", exit_on_error=False)
    def _run_feed(self) -> None:
        self.feed.run()

    def on_unmount(self) -> None:
        self.feed.stop()

    def _tick(self) -> None:
        self.ticked.publish(None)

    def watch_connection(self, value: str) -> None:
        for screen in self.screen_stack:
            screen.set_class(value == "disconnected", "-offline")
        self.ticked.publish(None)
        self.refresh_bindings()

    # ---- data ------------------------------------------------------------------------------

    def on_connected(self, message: Connected) -> None:
        was_down = self.connection == "disconnected"
        try:
            self.drain()  # what the previous watch said comes before this snapshot
            self._publish(self.state.load(message.snapshot))
        finally:
            message.applied.set()  # now the feed queues this watch's events
        self.connection, self.attempt, self.last_error = "connected", 0, ""
        if was_down:
            self.notify(f"reconnected to {self.source.address} after {message.attempts} "
                        f"attempt{'s' if message.attempts != 1 else ''}", title="connection")

    def on_connection_lost(self, message: ConnectionLost) -> None:
        self.attempt, self.last_error = message.attempt, message.error
        self.retry_at = time.monotonic() + message.retry_in
        self.connection = "disconnected"
        self.ticked.publish(None)

    def on_snapshot_loaded(self, message: SnapshotLoaded) -> None:
        if self.connection == "connected":
            self._publish(self.state.load(message.snapshot))

    def drain(self) -> None:
        """Apply what the feed queued since the last drain, as one batch."""
        batch = self.queue.drain()
        if not batch:
            return
        self.batches += 1
        changes = self.state.apply(batch)
        self._publish(changes)
        if changes.dropped:  # what was lost is in the next snapshot
            self.post_message(EventsDropped(changes.dropped))
            self.reload()

    def _publish(self, changes: Changes) -> None:
        if changes.jobs:
            self.post_message(JobsUpdated(frozenset(changes.jobs)))
        if changes.sites:
            self.post_message(SitesUpdated(frozenset(changes.sites)))
        if changes.beats:
            self.post_message(HeartbeatReceived(frozenset(changes.beats)))
        if changes.gpus:
            self.post_message(GpuSample(frozenset(changes.gpus)))
        for job_id, rnd, record in changes.rounds:
            self.post_message(RoundCompleted(job_id, rnd, record))
        self.changed.publish(changes)
        self.refresh_bindings()

    def reload(self) -> None:
        """Reload jobs and sites now (in a worker), unless one is on its way or we are offline."""
        if self._reloading or self.connection != "connected":
            return
        self._reloading = True
        self._reload()

    @work(thread=True, group="reload", exit_on_error=False)
    def _reload(self) -> None:
        try:
            snapshot = self.source.load()
        except AdminError:
            return  # the feed notices the connection is gone
        finally:
            self._reloading = False
        self.post_message(SnapshotLoaded(snapshot))

    # ---- actions ---------------------------------------------------------------------------

    def selected_job(self) -> dict[str, Any] | None:
        pick = getattr(self.screen, "selected_job", None)
        return pick() if callable(pick) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in BY_ACTION or action in ("help", "reload"):
            if isinstance(self.screen, ModalScreen):
                return False
        if action in MUTATING and self.readonly:
            return False  # hidden: read-only mode has no such keys
        spec = BY_ACTION.get(action)
        if spec is not None and self.connection != "connected":
            return None  # greyed until the server is back
        if spec is not None and spec.needs_job:
            job = self.selected_job()
            if job is None:
                return None  # shown greyed: nothing to act on
            if action == "abort" and job.get("status") in FINAL:
                return None
        return True

    def open_job(self, job_id: str, log: str | None = None) -> None:
        self.push_screen(JobScreen(job_id, log))

    def open_site(self, site: str) -> None:
        self.push_screen(SiteScreen(site))

    def action_logs(self) -> None:
        job = self.selected_job()
        if job is None:
            return
        if isinstance(self.screen, JobScreen):
            self.screen.action_next_log()
        else:
            self.open_job(job["job_id"], log=(job.get("sites") or [None])[0])

    def action_help(self) -> None:
        self.push_screen(HelpScreen(type(self.screen), self.readonly))

    def action_submit(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self._act("submit_job", None, lambda: self.source.submit_job(path),
                          lambda job_id: f"submitted {path} as job {job_id[:8]}")
        self.push_screen(PathPrompt("Job folder to submit:", title="Submit a job"), chosen)

    def action_abort(self) -> None:
        job = self.selected_job()
        if job is None or job.get("status") in FINAL:
            return
        job_id, label = job["job_id"], _label(job)

        def answered(yes: bool | None) -> None:
            if yes:
                self._act("abort_job", job_id, lambda: self.source.abort_job(job_id),
                          lambda j: f"job {label} is {j.get('status', 'aborting')}")
        if needs_confirmation("abort"):  # the console registry's policy (abort_job is destructive)
            self.push_screen(ConfirmScreen(f"Abort job {label}, now {job.get('status')}?\n"
                                           f"id {job_id}", yes="Abort", title="Abort job"), answered)
        else:
            answered(True)

    def action_clone(self) -> None:
        job = self.selected_job()
        if job is not None:
            job_id = job["job_id"]
            self._act("clone_job", job_id, lambda: self.source.clone_job(job_id),
                      lambda new: f"cloned {_label(job)} as job {new[:8]}")

    def action_download(self) -> None:
        job = self.selected_job()
        if job is None:
            return
        job_id = job["job_id"]

        def chosen(dest: str | None) -> None:
            if dest:
                self._act("download_job", job_id, lambda: self.source.download_job(job_id, dest),
                          lambda path: f"downloaded {_label(job)} into {path}")
        self.push_screen(PathPrompt(f"Download job {_label(job)} into folder:", self.download_dir,
                                    title="Download job"), chosen)

    def action_reload(self) -> None:
        self.reload()

    def _act(self, command: str, ref: str | None, call: Callable[[], Any], done: Callable[[Any], str]) -> None:
        def run() -> None:
            try:
                result = call()
            except AdminError as e:
                self.post_message(ActionFailed(command, ref, str(e)))
                return
            self.post_message(ActionDone(command, ref, done(result)))
        self.run_worker(run, thread=True, group="action", exit_on_error=False)

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.detail, title=message.command)
        self.reload()

    def on_action_failed(self, message: ActionFailed) -> None:
        self.notify(message.error, title=f"{message.command} failed", severity="error", timeout=8)


def _label(job: dict[str, Any]) -> str:
    return f"{job['job_id'][:8]} ({job.get('name') or '?'})"


def make_app(source: DataSource | Any, *, readonly: bool = False, refresh: float = REFRESH,
             batch_interval: float = BATCH_INTERVAL, queue: EventQueue | None = None,
             download_dir: str | Path = ".") -> FlshellTui:
    """The TUI over `source`: a DataSource (SessionSource for a server, ScriptedSource for
    tests), or a runtime.admin.Session, which is wrapped in a SessionSource."""
    if not isinstance(source, DataSource):
        source = SessionSource(source)
    return FlshellTui(source, readonly=readonly, refresh=refresh, batch_interval=batch_interval,
                      queue=queue, download_dir=download_dir)
