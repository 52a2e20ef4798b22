"""The TUI headless over a ScriptedSource (fixed data, frozen clock): what it shows, its keys and
dialogs, read-only mode, the log tail's follow mode, filter and sort, a scripted disconnect,
resizing. Messages are asserted before anything on screen."""

from __future__ import annotations

import threading
import time
from typing import Any

from textual.widgets import Log, Static

from runtime.admin.session import Event

from flshell.tui import ScriptedSource, make_app
from flshell.tui.demo import DONE, FAILED, NOW, RUNNING, WAITING, demo_source
from flshell.tui.messages import GpuSample, HeartbeatReceived, JobsUpdated, SitesUpdated
from flshell.tui.screens.dialogs import ConfirmScreen, PathPrompt
from flshell.tui.screens.help import HelpScreen
from flshell.tui.screens.job import JobScreen
from flshell.tui.screens.main import MainScreen
from flshell.tui.testing import cell, run, until
from flshell.tui.widgets.gpus import GpuPanel, GpuRow
from flshell.tui.widgets.jobs import JobsTable
from flshell.tui.widgets.log_tail import LogTail
from flshell.tui.widgets.sites import SitesTable
from flshell.tui.widgets.status import Banner, StatusLine


async def ready(pilot, app) -> None:
    """Connected, the scripted history applied, the tables filled."""
    await until(pilot, lambda: app.connection == "connected" and app.queue.received >= len(app.source.events)
                and not len(app.queue) and isinstance(app.screen, MainScreen)
                and app.screen.query_one(JobsTable).keys, "the scripted federation on screen", timeout=10)
    await pilot.pause()  # the messages of the last batch are handled


def test_main_screen_shows_jobs_sites_and_gpus_from_the_source():
    async def scenario() -> None:
        messages: list = []
        app = make_app(demo_source())
        async with app.run_test(size=(160, 48), message_hook=messages.append) as pilot:
            await ready(pilot, app)
            kinds = {type(m) for m in messages}
            assert {JobsUpdated, SitesUpdated, HeartbeatReceived, GpuSample} <= kinds
            jobs = app.screen.query_one(JobsTable)
            assert jobs.keys == [WAITING, RUNNING, FAILED, DONE]  # newest first
            assert cell(jobs, RUNNING, "status") == "RUNNING"
            assert cell(jobs, RUNNING, "round").endswith("4/8")  # round 4 of 8 runs
            assert cell(jobs, RUNNING, "duration") == "6:20"     # frozen clock
            sites = app.screen.query_one(SitesTable)
            assert [cell(sites, n, "age") for n in sites.keys] == ["1s", "14s", "21s", "41m"]
            fresh = [sites._cells[n][2][1] for n in sites.keys]  # the component class of each age
            assert fresh == ["sites--fresh", "sites--late", "sites--stale", "sites--lost"]
            assert cell(sites, "site-2", "cpu") == "81%" and cell(sites, "site-1", "task") == "train running"
            gpus = app.screen.query_one(GpuPanel)
            assert sorted(gpus.rows) == [("site-1", 0), ("site-1", 1), ("site-2", 0)]
            assert len(gpus.rows[("site-1", 0)].history) == 25  # 24 beats of history + the latest
            assert str(gpus.query_one("#no-gpu", Static).render()) == "no GPU: site-3, site-4"
            assert "jobs 1 running / 4" in str(app.screen.query_one(StatusLine).render())

    run(scenario())


def test_no_gpu_is_said_plainly():
    sites = [{"name": f"site-{i}", "status": "CONNECTED", "last_seen": NOW, "heartbeat_age": 0.0,
              "info": {"host": {"cpu_percent": 3.0}, "gpus": []}} for i in (1, 2)]

    async def scenario() -> None:
        app = make_app(ScriptedSource([], sites, now=NOW))
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.screen.query_one(GpuPanel)
            await until(pilot, lambda: app.state.sites, "the sites")
            await pilot.pause()
            assert not panel.query(GpuRow)
            assert str(panel.query_one("#no-gpu", Static).render()) == "no GPU on any of the 2 sites"
            assert "no GPU" in str(app.screen.query_one(StatusLine).render())

    run(scenario())


def test_no_gpu_says_why_when_the_sites_agree():
    note = "no NVML: ModuleNotFoundError: No module named 'pynvml'"
    sites = [{"name": f"site-{i}", "status": "CONNECTED", "last_seen": NOW, "heartbeat_age": 0.0,
              "info": {"gpus": [], "gpu_note": note if i < 3 else "no GPU"}} for i in (1, 2, 3)]

    async def scenario(sites, expected) -> None:
        app = make_app(ScriptedSource([], sites, now=NOW))
        async with app.run_test(size=(120, 24)) as pilot:
            panel = app.screen.query_one(GpuPanel)
            await until(pilot, lambda: app.state.sites, "the sites")
            await pilot.pause()
            assert str(panel.query_one("#no-gpu", Static).render()) == expected

    run(scenario(sites[:2], f"no GPU on any of the 2 sites ({note})"))
    run(scenario(sites, "no GPU on any of the 3 sites"))  # they differ: no reason picked


def test_a_freshly_opened_tui_shows_the_gpu_history_the_server_kept():
    sites = [{"name": "site-1", "status": "CONNECTED", "last_seen": NOW, "heartbeat_age": 1.0,
              "info": {"gpus": [{"index": 0, "name": "H100", "util_percent": 90, "mem_used": 1, "mem_total": 2}]}}]
    util = [float(u) for u in range(0, 100, 10)]
    history = {"site-1": {0: {"t": [NOW - 50 + 5 * i for i in range(10)], "util": util, "mem_used": [1] * 10}}}

    async def scenario() -> None:
        messages: list = []
        app = make_app(ScriptedSource([], sites, gpu_history=history, now=NOW))  # no heartbeat comes
        async with app.run_test(size=(200, 40), message_hook=messages.append) as pilot:
            panel = app.screen.query_one(GpuPanel)
            await until(pilot, lambda: ("site-1", 0) in panel.rows, "the GPU row")
            await pilot.pause()
            assert any(isinstance(m, GpuSample) for m in messages)
            row = panel.rows[("site-1", 0)]
            assert row.history == util
            assert "▁▂▃▄▄▅▆▇█" in row.render().plain  # its sparkline: the server's past minutes

    run(scenario())


def test_abort_asks_first_with_no_focused_and_aborts_on_yes():
    async def scenario() -> None:
        src = demo_source()
        app = make_app(src)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot, app)
            jobs = app.screen.query_one(JobsTable)
            jobs.select(DONE)
            await pilot.pause()
            assert app.check_action("abort", ()) is None  # greyed: the job has ended
            jobs.select(RUNNING)
            await pilot.pause()
            assert app.check_action("abort", ()) is True
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the dialog")
            assert "3f2a9c1e (cifar10-fedavg), now RUNNING" in app.screen.question
            assert app.screen.focused.id == "no"
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, MainScreen), "the dialog to close")
            assert src.calls == []
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the dialog again")
            await pilot.click("#yes")
            await until(pilot, lambda: src.calls == [("abort_job", RUNNING)], "the abort call")
            await until(pilot, lambda: cell(jobs, RUNNING, "status") == "ABORTED", "ABORTED after a reload")

    run(scenario())


def test_readonly_hides_the_keys_that_change_the_server():
    async def scenario() -> None:
        src = demo_source()
        app = make_app(src, readonly=True)
        async with app.run_test(size=(120, 30)) as pilot:
            await ready(pilot, app)
            app.screen.query_one(JobsTable).select(RUNNING)
            await pilot.pause()
            for action in ("submit", "abort", "clone"):
                assert app.check_action(action, ()) is False
            assert app.check_action("download", ()) is True and app.check_action("logs", ()) is True
            shown = {k for k, b in app.screen.active_bindings.items() if b.binding.show}  # the footer's
            assert not {"s", "a", "c"} & shown and {"d", "l", "q"} <= shown
            await pilot.press("a", "s", "c")
            await pilot.pause()
            assert isinstance(app.screen, MainScreen) and src.calls == []
            assert "read-only" in str(app.screen.query_one(StatusLine).render())

    run(scenario())


def test_submit_clone_and_download_call_the_source(tmp_path):
    folder = tmp_path / "my-job"
    folder.mkdir()

    async def scenario() -> None:
        src = demo_source()
        app = make_app(src, download_dir=tmp_path / "downloads")
        async with app.run_test(size=(120, 30)) as pilot:
            await ready(pilot, app)
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, PathPrompt), "the submit prompt")
            app.screen.query_one("#path").value = str(folder)  # typing is tested on a real server
            await pilot.press("enter")
            await until(pilot, lambda: ("submit_job", str(folder)) in src.calls, "the submit call")
            jobs = app.screen.query_one(JobsTable)
            await until(pilot, lambda: len(jobs.keys) == 5, "the new job after a reload")
            jobs.select(DONE)
            await pilot.press("c")
            await until(pilot, lambda: ("clone_job", DONE) in src.calls, "the clone call")
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, PathPrompt), "the download prompt")
            assert app.screen.query_one("#path").value == str(tmp_path / "downloads")
            await pilot.press("enter")
            await until(pilot, lambda: ("download_job", DONE) in src.calls, "the download call")
            assert (tmp_path / "downloads" / DONE).is_dir()

    run(scenario())


def help_text(app) -> str:
    return "\n".join(str(w.render()) for w in app.screen.query("Label"))


def test_help_shows_the_tuis_own_keys_screen_by_screen_the_open_one_first():
    async def scenario() -> None:
        app = make_app(demo_source())
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot, app)
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
            text = help_text(app)
            titles = [str(w.render()) for w in app.screen.query(".help-section")]
            assert titles[0].startswith("Main screen") and titles[0].endswith("(this screen)")
            assert [t.split()[0] for t in titles] == ["Main", "Job", "Site", "Every", "Dialogs"]
            for words in ("filter the focused table", "follow the log again", "on a site: its site screen",
                          "abort the selected job (asks first)", "Ctrl-C", "quit"):
                assert words in text, words
            # the TUI's words, not the prompt-toolkit console's command help
            assert "console" not in text and "stop a job that has not ended" not in text
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, MainScreen), "the help to close")
            app.screen.query_one(JobsTable).select(RUNNING)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen), "the job screen")
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help on the job screen")
            titles = [str(w.render()) for w in app.screen.query(".help-section")]
            assert titles[0].startswith("Job screen") and titles[0].endswith("(this screen)")

    run(scenario())


def test_ctrl_c_quits_as_q_does_with_no_notification_from_any_screen():
    for keys in (("ctrl+c",), ("s", "ctrl+c")):  # the main screen; a path prompt with the focus in it
        async def scenario() -> None:
            app = make_app(demo_source())
            async with app.run_test(size=(80, 24)) as pilot:
                await ready(pilot, app)
                for key in keys:
                    await pilot.press(key)
                await until(pilot, lambda: app.return_code is not None, f"{keys} to quit")
                assert app.return_code == 0
                assert not list(app._notifications), "no 'press ctrl+q to quit' toast"

        run(scenario())


def test_the_task_column_says_the_task_in_words_and_shows_it_whole_at_200_columns():
    from textual.widgets import DataTable
    from flshell.tui.widgets.job_detail import JobSitesTable

    async def scenario() -> None:
        src = demo_source()
        app = make_app(src)
        async with app.run_test(size=(200, 50)) as pilot:
            await ready(pilot, app)
            sites = app.screen.query_one(SitesTable)
            assert [cell(sites, n, "task") for n in sites.keys] == ["train running", "train ok", "train running", "-"]
            src.push(Event(900, NOW, "task_result", {"job_id": RUNNING, "site": "site-1", "task": "cross_site_validate",
                                                     "ok": False, "seconds": 2.0}))
            await until(pilot, lambda: cell(sites, "site-1", "task") == "cross_site_validate failed", "the failure")
            await pilot.pause()

            def shown(table: DataTable) -> list[str]:
                """Each row's text as drawn, from the table's own strips."""
                return [table.render_line(y).text for y in range(1, len(table.keys) + 1)]
            rows = shown(sites)
            assert "cross_site_validate failed" in rows[0] and "…" not in "".join(rows)
            app.screen.query_one(JobsTable).select(RUNNING)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail, "the job screen")
            job_sites = app.screen.query_one(JobSitesTable)
            await until(pilot, lambda: len(job_sites.keys) == 3, "the job's sites")
            await pilot.pause()
            rows = shown(job_sites)
            assert "cross_site_validate failed" in rows[0] and "train ok" in rows[1] and "…" not in "".join(rows)

    run(scenario())


def test_no_stray_scrollbar_glyphs_at_80x24():
    """At 80x24 a job's Sites table wider than its panel (a long task name) and log lines longer
    than the screen draw no one-cell horizontal scrollbar (a lone partial block under the rows)."""
    from flshell.tui.widgets.job_detail import JobSitesTable

    async def scenario() -> None:
        src = demo_source()
        src.logs[(RUNNING, None)] = [f"line {i} " + "x" * 120 for i in range(30)]
        app = make_app(src)
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot, app)
            src.push(Event(900, NOW, "task_assigned", {"job_id": RUNNING, "site": "site-1",
                                                       "task": "cross_site_model_validation"}))
            await until(pilot, lambda: app.state.last_seq == 900, "the long task")
            app.screen.query_one(JobsTable).select(RUNNING)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail
                        and app.screen.query_one(Log).line_count == 30, "the job screen")
            await pilot.pause()
            table, log = app.screen.query_one(JobSitesTable), app.screen.query_one(Log)
            assert table.virtual_size.width > table.size.width and log.max_scroll_x > 0  # both too wide
            assert table.scrollbar_size_horizontal == 0 and log.scrollbar_size_horizontal == 0
            blank_row = table.render_line(len(table.keys) + 1).text  # the row under the last site
            assert not set(blank_row) & set("▏▎▍▌▋▊▉█▔▁"), repr(blank_row)

    run(scenario())


def test_the_job_screen_shows_rounds_metrics_sites_and_a_log_that_stops_following_when_scrolled_up():
    async def scenario() -> None:
        src = demo_source()
        app = make_app(src)
        async with app.run_test(size=(120, 40)) as pilot:
            await ready(pilot, app)
            app.screen.query_one(JobsTable).select(RUNNING)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail, "the job screen")
            screen = app.screen
            rounds = screen.query_one("#rounds")
            assert rounds.keys == ["2", "1", "0"] and cell(rounds, "0", "accuracy") == "0.42"
            assert [c.key.value for c in rounds.ordered_columns][3:] == ["accuracy", "loss"]
            assert sorted(screen.query_one("#job-sites").keys) == ["site-1", "site-2", "site-3"]
            tail, log = screen.query_one(LogTail), screen.query_one(Log)
            await until(pilot, lambda: log.line_count == 30, "the server log's last lines")
            assert tail.following
            src.append_log(RUNNING, None, *(f"new line {i}" for i in range(40)))
            await until(pilot, lambda: log.line_count == 70, "the new lines")
            assert tail.following and log.scroll_y == log.max_scroll_y
            log.scroll_to(y=0, animate=False, immediate=True)  # the user scrolls up
            await pilot.pause()
            src.append_log(RUNNING, None, *(f"more {i}" for i in range(5)))
            await until(pilot, lambda: log.line_count == 75, "more lines")
            assert log.scroll_y == 0 and not tail.following
            assert "paused" in str(screen.query_one("#log-state").render())
            log.focus()
            await pilot.press("end")  # follows again
            src.append_log(RUNNING, None, "the last line")
            await until(pilot, lambda: log.line_count == 76, "the last line")
            await pilot.pause(0.2)
            assert tail.following and log.scroll_y == log.max_scroll_y
            await pilot.press("tab")  # the next source: site-1's log
            await until(pilot, lambda: tail.current == "site-1" and log.line_count == 30, "site-1's log")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, MainScreen), "back on the main screen")

    run(scenario())


def test_filter_and_sort_the_jobs_table():
    async def scenario() -> None:
        app = make_app(demo_source())
        async with app.run_test(size=(120, 30)) as pilot:
            await ready(pilot, app)
            jobs = app.screen.query_one(JobsTable)
            await pilot.press("slash", *"numpy")
            await until(pilot, lambda: jobs.keys == [WAITING, DONE], "the filter to apply")
            assert "filter: numpy" in str(app.screen.query_one("#jobs-panel").border_title)
            await pilot.press("escape")
            await until(pilot, lambda: len(jobs.keys) == 4, "the filter to clear")
            await pilot.click(JobsTable, offset=(12, 0))  # the "Name" header
            await until(pilot, lambda: jobs.sort_by == "name", "sorting by name")
            assert jobs.keys[0] == RUNNING and jobs.keys[-1] == FAILED  # cifar10, hello x2, prostate
            assert "(by name ↑)" in str(app.screen.query_one("#jobs-panel").border_title)
            await pilot.press("O")  # reversed
            assert jobs.keys[0] == FAILED and jobs.keys[-1] == RUNNING
            await pilot.press("o")  # the next column: status
            assert jobs.sort_by == "status" and jobs.keys == [DONE, FAILED, RUNNING, WAITING]  # A to Z

    run(scenario())


def test_a_scripted_disconnect_greys_the_data_counts_retries_and_recovers():
    async def scenario() -> None:
        src = demo_source()
        app = make_app(src)
        app.feed.base_delay, app.feed.max_delay = 0.05, 0.1
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot, app)
            banner = app.screen.query_one(Banner)
            src.disconnect()
            await until(pilot, lambda: app.attempt >= 3, "three failed reconnects")
            assert banner.display and app.screen.has_class("-offline")
            assert len(app.state.jobs) == 4, "the stale data stays"
            src.reconnect()
            await until(pilot, lambda: app.connection == "connected", "the reconnect")
            await pilot.pause()
            assert not banner.display and not app.screen.has_class("-offline")

    run(scenario())


def test_resizing_from_large_to_small_and_back_never_crashes():
    async def scenario() -> None:
        app = make_app(demo_source())
        async with app.run_test(size=(200, 60)) as pilot:
            await ready(pilot, app)
            for size in ((80, 24), (20, 8), (160, 48)):
                await pilot.resize_terminal(*size)
                await pilot.pause()
            await pilot.press("down", "enter")
            for size in ((60, 20), (200, 60)):
                await pilot.resize_terminal(*size)
                await pilot.pause()
            assert app.is_running and isinstance(app.screen, JobScreen)

    run(scenario())


class GatedLoad(ScriptedSource):
    """The first load() waits for `gate`: the test decides when the feed's snapshot is ready."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.gate, self.loading = threading.Event(), threading.Event()

    def load(self):
        if not self.gate.is_set():
            self.loading.set()
            self.gate.wait(30)
        return super().load()


def test_events_are_applied_after_the_snapshot_even_when_the_drain_timer_runs_first():
    """The snapshot flake (test_main_screen[160x48] on a busy CI): the feed posted Connected and
    queued the replayed events at once; when the drain timer ran before the app handled
    Connected, the events came first: the RUNNING job was created alone (named "?") and took
    the table's cursor, which it kept once the snapshot added the newer WAITING job."""
    demo = demo_source()
    src = GatedLoad(demo.jobs, demo.sites, details=demo.details, logs=demo.logs, events=demo.events,
                    now=demo.now, info=demo.info, address=demo.address)

    async def scenario() -> None:
        messages: list = []
        app = make_app(src)
        async with app.run_test(size=(160, 48), message_hook=messages.append) as pilot:
            await until(pilot, src.loading.is_set, "the feed loading its snapshot")
            # From here the event loop is held on purpose (no await): Connected cannot be
            # handled until the feed has queued the events or waits for the UI to apply it.
            src.gate.set()
            deadline = time.monotonic() + 10
            while not (app.queue.received >= len(src.events) or app.feed.awaiting_ui):
                assert time.monotonic() < deadline, "the feed neither queued the events nor waited"
                time.sleep(0.01)  # a look at another thread's progress, not a synchronisation
            app.drain()  # the drain timer, running before the Connected message is handled
            await ready(pilot, app)
            jobs = app.screen.query_one(JobsTable)
            assert jobs.keys == [WAITING, RUNNING, FAILED, DONE]
            assert jobs.selected_key == WAITING, "the cursor on the first row, as on any start"
            first_jobs = next(m for m in messages if isinstance(m, JobsUpdated))
            assert first_jobs.job_ids == {WAITING, RUNNING, FAILED, DONE}, "the snapshot came first"
            assert app.state.jobs[RUNNING]["name"] == "cifar10-fedavg"
            assert len(app.state.gpu_util[("site-1", 0)]) == 25, "every heartbeat applied once"

    run(scenario())
