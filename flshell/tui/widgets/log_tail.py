"""A live log tail per site (and the server): one tab per source, one follow stream at a time in a
worker; it follows the end until the user scrolls up, and follows again from the end (End)."""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any, Iterator

from textual import on, work
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, Log, Tab, Tabs

from runtime.admin.errors import AdminError, NotFound

if TYPE_CHECKING:
    from flshell.tui.data import DataSource, LogStream

SERVER_TAB = "server"
MAX_PENDING = 5000   # lines held between two paints; a flood drops the oldest
MAX_LINES = 5000     # lines the Log keeps
PAINT_EVERY = 0.1    # seconds
RETRY_NOT_FOUND = 2.0  # seconds between looks for a log that is not there yet
LOADING = "loading…"


def _tab_id(source: str) -> str:
    return "log-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in source)


class FollowLog(Log):
    """A Log whose `following` is a state, not a scroll position: it is left only when the user
    scrolls up, and taken again when the user reaches the end or calls `follow()`. While
    following, the end stays in view whatever changes the height (new lines, a horizontal
    scrollbar that appears, a resize)."""

    class Changed(Message):
        """The log started or stopped following its end."""

        def __init__(self, log: "FollowLog", following: bool) -> None:
            super().__init__()
            self.log = log
            self.following = following

        @property
        def control(self) -> "FollowLog":
            return self.log

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(auto_scroll=False, **kwargs)
        self.following = True
        self._keeping = False  # our own scroll to the end: not the user's

    def _set_following(self, value: bool) -> None:
        if value != self.following:
            self.following = value
            self.post_message(self.Changed(self, value))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._keeping:
            return
        if new_value < old_value and new_value < self.max_scroll_y:
            self._set_following(False)  # the user scrolled up (a clamp lands on the end)
        elif new_value > old_value and new_value >= self.max_scroll_y:
            self._set_following(True)   # the user scrolled down to the end

    def keep_end(self) -> None:
        """While following, show the end (call after anything that may have moved it)."""
        if self.following and self.scroll_y < self.max_scroll_y:
            self._keeping = True
            try:
                self.scroll_end(animate=False, immediate=True, x_axis=False)
            finally:
                self._keeping = False

    def follow(self) -> None:
        """Follow the end again (End)."""
        self._set_following(True)
        self.keep_end()

    def write_lines(self, lines: Any, scroll_end: bool | None = None) -> "FollowLog":
        super().write_lines(lines, scroll_end=False)
        self.keep_end()
        return self

    def clear(self) -> "FollowLog":
        super().clear()
        self._set_following(True)
        return self

    def on_resize(self) -> None:
        self.keep_end()


class LogTail(Vertical):
    """Tabs (server and each site) over one FollowLog and a state line. Each `open` starts a new
    generation: its worker's stream, lines and notes count only while that generation is the
    current one, so a slow open that finishes after the user moved on closes its stream instead
    of showing it (no doubled lines, no follower left running)."""

    class Note(Message):
        """What the worker of `generation` says about its log (loading, not there yet, ended)."""

        def __init__(self, generation: int, text: str) -> None:
            super().__init__()
            self.generation = generation
            self.text = text

    def __init__(self, source: "DataSource", job_id: str, sites: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source, self.job_id = source, job_id
        self.sources = [SERVER_TAB, *sites]
        self.current: str | None = None
        self.note = ""
        self.generation = 0
        self._pending: collections.deque[str] = collections.deque(maxlen=MAX_PENDING)
        self._lock = threading.Lock()
        self._stream: LogStream | None = None
        self._wake = threading.Event()  # ends a wait for a log that is not there yet

    def compose(self):
        yield Tabs(*(Tab(s, id=_tab_id(s)) for s in self.sources), id="log-tabs")
        yield FollowLog(max_lines=MAX_LINES, id="log")
        yield Label("", id="log-state")

    def on_mount(self) -> None:
        self.set_interval(PAINT_EVERY, self._paint)

    @property
    def log(self) -> FollowLog:
        return self.query_one("#log", FollowLog)

    @property
    def following(self) -> bool:
        return self.log.following

    def set_sites(self, sites: list[str]) -> None:
        tabs = self.query_one(Tabs)
        for site in sites:
            if site not in self.sources:
                self.sources.append(site)
                tabs.add_tab(Tab(site, id=_tab_id(site)))

    @on(Tabs.TabActivated, "#log-tabs")
    def _switch(self, event: Tabs.TabActivated) -> None:
        name = next((s for s in self.sources if _tab_id(s) == event.tab.id), None)
        if name is not None:
            self.open(name)

    def open(self, name: str) -> None:
        """Show `name`'s log (SERVER_TAB for the server's): the last lines, then new ones."""
        if name == self.current:
            return
        with self._lock:
            self.generation += 1
            generation = self.generation
            stream, self._stream = self._stream, None
            self._pending.clear()
            self.current = name
        self._wake.set()  # a worker waiting for a missing log looks at the generation now
        self._wake = threading.Event()
        if stream is not None:
            stream.close()
        self.log.clear()
        self.note = LOADING
        self._show_state()
        self._tail(name, generation, self._wake)
        tabs = self.query_one(Tabs)
        if tabs.active != _tab_id(name) and tabs.query(f"#{_tab_id(name)}"):
            tabs.active = _tab_id(name)

    def next_source(self) -> None:
        i = self.sources.index(self.current) if self.current in self.sources else -1
        self.open(self.sources[(i + 1) % len(self.sources)])

    def follow(self) -> None:
        self.log.follow()
        self._show_state()

    # ---- the worker (a thread: the DataSource blocks) ----------------------------------------

    def _is_current(self, generation: int) -> bool:
        with self._lock:
            return generation == self.generation

    def _say(self, generation: int, text: str) -> None:
        if self._is_current(generation):
            self.post_message(self.Note(generation, text))

    @work(thread=True, group="log-tail", exit_on_error=False)
    def _tail(self, name: str, generation: int, wake: threading.Event) -> None:
        site = None if name == SERVER_TAB else name
        while self._is_current(generation):
            try:
                stream = self.source.tail_log(self.job_id, site, lines=200, follow=True)
            except NotFound as e:  # not written yet (a job that has just started): look again
                self._say(generation, f"{e}; looking again every {RETRY_NOT_FOUND:g}s")
                wake.wait(RETRY_NOT_FOUND)
                continue
            except AdminError as e:
                self._say(generation, str(e))
                return
            with self._lock:
                if generation != self.generation:  # the user looks elsewhere already
                    stale = True
                else:
                    stale, self._stream = False, stream
            if stale:
                stream.close()
                return
            outcome = self._read(stream, generation)
            if outcome is None:  # the log was not there yet (a server says so on the first read)
                wake.wait(RETRY_NOT_FOUND)
                continue
            self._say(generation, outcome)
            return

    def _read(self, stream: "LogStream", generation: int) -> str | None:
        """Queue the stream's lines for painting; what to say when it ends, or None when the
        log turned out not to exist yet (the server says so on the first read)."""
        lines: Iterator[str] = iter(stream)
        self._say(generation, "")
        try:
            for line in lines:
                with self._lock:
                    if generation != self.generation:
                        break
                    self._pending.append(line)
            else:
                return "end of log (the job has ended)"
        except NotFound as e:
            with self._lock:
                current = generation == self.generation
                if current:
                    self._stream = None
            stream.close()
            if current:
                self.post_message(self.Note(generation, f"{e}; looking again every {RETRY_NOT_FOUND:g}s"))
            return None
        except AdminError as e:
            return f"log stopped: {e}"
        stream.close()  # superseded: the user opened another log
        return ""

    # ---- the UI side -------------------------------------------------------------------------

    @on(Note)
    def _noted(self, message: Note) -> None:
        if message.generation == self.generation:
            self.note = message.text
            self._show_state()

    @on(FollowLog.Changed)
    def _follow_changed(self, message: FollowLog.Changed) -> None:
        self._show_state()

    def close_stream(self) -> None:
        with self._lock:
            self.generation += 1
            stream, self._stream = self._stream, None
        self._wake.set()
        if stream is not None:
            stream.close()

    def _paint(self) -> None:
        with self._lock:
            lines = list(self._pending)
            self._pending.clear()
        log = self.log
        if lines:
            log.write_lines(lines)
        else:
            log.keep_end()  # e.g. a horizontal scrollbar appeared under the last line
        self._show_state()

    def _show_state(self) -> None:
        following = self.log.following
        state = "following" if following else "paused: scrolled up (End to follow)"
        text = f"{self.current or ''} │ {state}" + (f" │ {self.note}" if self.note else "")
        label = self.query_one("#log-state", Label)
        label.set_class(not following, "-paused")
        label.update(text)

    def on_unmount(self) -> None:
        self.close_stream()
