"""A live log tail per site (and the server): one tab per source, one follow stream at a time in a
worker; it follows the end until the user scrolls up, and follows again at the end (End)."""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.worker import get_current_worker
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Log, Tab, Tabs

from runtime.admin.errors import AdminError, NotFound

if TYPE_CHECKING:
    from flshell.tui.data import DataSource, LogStream

SERVER_TAB = "server"
MAX_PENDING = 5000   # lines held between two paints; a flood drops the oldest
MAX_LINES = 5000     # lines the Log keeps
PAINT_EVERY = 0.1    # seconds
RETRY_NOT_FOUND = 2.0  # seconds between looks for a log that is not there yet


def _tab_id(source: str) -> str:
    return "log-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in source)


class LogTail(Vertical):
    BINDINGS = [Binding("end", "follow", "Follow", show=False)]

    def __init__(self, source: "DataSource", job_id: str, sites: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source, self.job_id = source, job_id
        self.sources = [SERVER_TAB, *sites]
        self.current: str | None = None
        self._pending: collections.deque[str] = collections.deque(maxlen=MAX_PENDING)
        self._lock = threading.Lock()
        self._stream: LogStream | None = None
        self._note = ""

    def compose(self):
        yield Tabs(*(Tab(s, id=_tab_id(s)) for s in self.sources), id="log-tabs")
        yield Log(max_lines=MAX_LINES, id="log")
        yield Label("", id="log-state")

    def on_mount(self) -> None:
        self.set_interval(PAINT_EVERY, self._paint)

    @property
    def log(self) -> Log:
        return self.query_one("#log", Log)

    @property
    def following(self) -> bool:
        log = self.log
        return log.is_vertical_scroll_end or log.max_scroll_y == 0

    def set_sites(self, sites: list[str]) -> None:
        tabs = self.query_one(Tabs)
        for site in sites:
            if site not in self.sources:
                self.sources.append(site)
                tabs.add_tab(Tab(site, id=_tab_id(site)))

    @on(Tabs.TabActivated, "#log-tabs")
    def _switch(self, event: Tabs.TabActivated) -> None:
        name = next(s for s in self.sources if _tab_id(s) == event.tab.id)
        self.open(name)

    def open(self, name: str) -> None:
        """Show `name`'s log (SERVER_TAB for the server's): the last lines, then new ones."""
        if name == self.current:
            return
        self.close_stream()
        self.current = name
        with self._lock:
            self._pending.clear()
        self.log.clear()
        self._note = "loading…"
        self._tail(name)
        tabs = self.query_one(Tabs)
        if tabs.active != _tab_id(name):
            tabs.active = _tab_id(name)

    def next_source(self) -> None:
        i = self.sources.index(self.current) if self.current in self.sources else -1
        self.open(self.sources[(i + 1) % len(self.sources)])

    @work(thread=True, exclusive=True, group="log-tail")
    def _tail(self, name: str) -> None:
        worker = get_current_worker()
        while True:
            try:
                stream = self.source.tail_log(self.job_id, None if name == SERVER_TAB else name,
                                              lines=200, follow=True)
                break
            except NotFound as e:  # not written yet (a job that has just started): look again
                self._note = f"{e}; looking again every {RETRY_NOT_FOUND:g}s"
            except AdminError as e:
                self._note = str(e)
                return
            time.sleep(RETRY_NOT_FOUND)
            if worker.is_cancelled or self.current != name:
                return
        with self._lock:
            if self.current != name:
                stream.close()
                return
            self._stream = stream
        self._note = ""
        note = "end of log (the job has ended)"
        try:
            for line in stream:
                with self._lock:
                    if self._stream is not stream:  # closed: the user looks at another log
                        return
                    self._pending.append(line)
        except AdminError as e:
            note = f"log stopped: {e}"
        with self._lock:
            if self._stream is stream:
                self._note = note

    def close_stream(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _paint(self) -> None:
        with self._lock:
            lines = list(self._pending)
            self._pending.clear()
        if lines:
            self.log.write_lines(lines)  # keeps following only when at the end already
        following = self.following
        state = "following" if following else "paused: scrolled up (End to follow)"
        text = f"{self.current or ''} │ {state}" + (f" │ {self._note}" if self._note else "")
        label = self.query_one("#log-state", Label)
        label.set_class(not following, "-paused")
        label.update(text)

    def action_follow(self) -> None:
        self.log.scroll_end(animate=False, immediate=True)

    def on_unmount(self) -> None:
        self.close_stream()
