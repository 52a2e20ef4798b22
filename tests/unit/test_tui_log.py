"""The job screen's log tail: it follows until the user scrolls up (a horizontal scrollbar is not
a scroll), End follows again whatever has the focus, and switching tabs always ends on the new
log: a slow open that finishes after the user moved on is closed, a log that is not there yet
is looked for again (a server says so on the first read, as runtime.admin.Session does)."""

from __future__ import annotations

import threading
from typing import Any

from runtime.admin.errors import NotFound

from flshell.tui import ScriptedSource, make_app
from flshell.tui.demo import RUNNING, demo_source
from flshell.tui.screens.job import JobScreen
from flshell.tui.screens.main import MainScreen
from flshell.tui.testing import run, until
from flshell.tui.widgets import log_tail
from flshell.tui.widgets.jobs import JobsTable
from flshell.tui.widgets.log_tail import LOADING, FollowLog, LogTail

SIZE = (80, 24)


def copy_of(demo: ScriptedSource, cls: type[ScriptedSource], **kw: Any) -> ScriptedSource:
    return cls(demo.jobs, demo.sites, details=demo.details, logs=demo.logs, events=demo.events,
               now=demo.now, info=demo.info, address=demo.address, **kw)


async def job_screen(pilot, app) -> LogTail:
    await until(pilot, lambda: isinstance(app.screen, MainScreen) and app.connection == "connected"
                and RUNNING in app.screen.query_one(JobsTable).keys, "the demo on the main screen")
    app.screen.query_one(JobsTable).select(RUNNING)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, JobScreen), "the job screen")
    return app.screen.query_one(LogTail)


def state(tail: LogTail) -> str:
    return str(tail.query_one("#log-state").render())


def followers(src: ScriptedSource, site: str | None) -> int:
    with src._lock:
        return len(src._tails.get((RUNNING, site), ()))


def test_a_log_wider_than_the_screen_opens_following_and_end_follows_again_from_any_focus():
    src = demo_source()  # lines longer than 80 columns: the Log gets a horizontal scrollbar
    src.logs[(RUNNING, None)] = [f"2026-01-01 00:00:{i:02d} " + "x" * 100 + f" {i}" for i in range(30)]
    messages: list = []

    async def scenario() -> None:
        app = make_app(src)
        async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
            tail = await job_screen(pilot, app)
            log = tail.log
            await until(pilot, lambda: log.line_count == 30 and log.max_scroll_x > 0, "the wide lines")
            await until(pilot, lambda: log.scroll_y == log.max_scroll_y, "the end in view, scrollbar and all")
            assert tail.following and "following" in state(tail) and "paused" not in state(tail)
            assert not any(isinstance(m, FollowLog.Changed) for m in messages), "nobody scrolled"
            log.scroll_to(y=0, animate=False, immediate=True)  # the user scrolls up
            await until(pilot, lambda: "paused" in state(tail), "paused")
            assert not tail.following
            assert app.focused is not log  # the rounds table has the focus
            await pilot.press("end")
            await until(pilot, lambda: "following" in state(tail), "following again")
            assert log.scroll_y == log.max_scroll_y
            src.append_log(RUNNING, None, *(f"new {i} " + "y" * 90 for i in range(10)))
            await until(pilot, lambda: log.line_count == 40 and log.scroll_y == log.max_scroll_y,
                        "the new lines followed")
            assert tail.following

    run(scenario())


class GatedSource(ScriptedSource):
    """tail_log of the server's log waits for `gate` (a slow server)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.gate = threading.Event()
        self.waiting = 0

    def tail_log(self, ref: str, site: str | None, lines: int = 200, follow: bool = True):
        if site is None:
            with self._lock:
                self.waiting += 1
            self.gate.wait(30)
        return super().tail_log(ref, site, lines, follow)


def test_switching_back_before_a_slow_open_returns_shows_the_log_once_with_one_follower():
    src = copy_of(demo_source(), GatedSource)

    async def scenario() -> None:
        app = make_app(src)
        async with app.run_test(size=SIZE) as pilot:
            tail = await job_screen(pilot, app)  # opens the server's log: held at the gate
            await until(pilot, lambda: src.waiting == 1, "the first open waiting")
            assert LOADING in state(tail)
            tail.open("site-1")
            await until(pilot, lambda: tail.log.line_count == 30 and LOADING not in state(tail), "site-1's log")
            tail.open("server")  # back, while the first open is still on its way
            await until(pilot, lambda: src.waiting == 2, "the second open waiting")
            src.gate.set()
            await until(pilot, lambda: tail.log.line_count >= 30 and LOADING not in state(tail),
                        "the server's log")
            await until(pilot, lambda: followers(src, None) == 1 and followers(src, "site-1") == 0,
                        "one follower: the late first open closed its stream")
            src.append_log(RUNNING, None, "one more")
            await until(pilot, lambda: tail.log.line_count == 31, "the new line, once")
            assert list(tail.log.lines).count("one more") == 1 and tail.current == "server"

    run(scenario())


class LazySource(ScriptedSource):
    """Like runtime.admin.Session: a missing log is an error on the first read, not on the call."""

    def tail_log(self, ref: str, site: str | None, lines: int = 200, follow: bool = True):
        try:
            return super().tail_log(ref, site, lines, follow)
        except NotFound as e:
            error = e

        class Missing:
            def __iter__(self):
                return self

            def __next__(self):
                raise error

            def close(self) -> None:
                pass
        return Missing()


def test_a_tab_whose_log_is_not_there_yet_shows_it_once_it_is_written(monkeypatch):
    monkeypatch.setattr(log_tail, "RETRY_NOT_FOUND", 0.05)
    demo = demo_source()
    del demo.logs[(RUNNING, "site-3")]
    src = copy_of(demo, LazySource)

    async def scenario() -> None:
        app = make_app(src)
        async with app.run_test(size=SIZE) as pilot:
            tail = await job_screen(pilot, app)
            await until(pilot, lambda: tail.log.line_count == 30, "the server's log")
            tail.open("site-3")
            await until(pilot, lambda: "looking again" in state(tail), "the log is not there yet")
            src.append_log(RUNNING, "site-3", "site-3: started")
            await until(pilot, lambda: tail.log.line_count == 1 and "looking again" not in state(tail)
                        and LOADING not in state(tail), "site-3's log once written")
            assert list(tail.log.lines) == ["site-3: started"]

    run(scenario())
