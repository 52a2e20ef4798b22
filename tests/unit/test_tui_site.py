"""The site screen (Enter on a row of the Sites table): the site's heartbeats and status changes,
its host's CPU / memory history kept by the TUI from the heartbeats (the server keeps none,
coalesced heartbeats included), its jobs (Enter opens one) and its GPUs."""

from __future__ import annotations

from runtime.admin.session import Event

from flshell.tui import make_app
from flshell.tui.demo import DONE, NOW, RUNNING, demo_source
from flshell.tui.feed import EventQueue
from flshell.tui.messages import HeartbeatReceived
from flshell.tui.screens.job import JobScreen
from flshell.tui.screens.main import MainScreen
from flshell.tui.screens.site import SiteScreen
from flshell.tui.state import HOST_HISTORY
from flshell.tui.testing import cell, run, until
from flshell.tui.widgets.gpus import GpuPanel
from flshell.tui.widgets.site_detail import BeatsView, HostRow, SiteJobsTable
from flshell.tui.widgets.sites import SitesTable

GIB = 1 << 30


def beat(seq: int, ts: float, cpu: float, site: str = "site-1") -> Event:
    return Event(seq, ts, "heartbeat", {"site": site, "info": {"host": {
        "cpu_percent": cpu, "cpu_count": 16, "mem_used": 32 * GIB, "mem_total": 64 * GIB}}})


async def site_screen(pilot, app, site: str = "site-1") -> SiteScreen:
    last = max(e.seq for e in app.source.events)
    await until(pilot, lambda: isinstance(app.screen, MainScreen) and app.state.last_seq == last
                and len(app.screen.query_one(SitesTable).keys) == 4, "the demo on the main screen")
    table = app.screen.query_one(SitesTable)
    table.focus()
    table.select(site)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, SiteScreen), "the site screen")
    await pilot.pause()
    return app.screen


def test_enter_on_a_site_shows_its_heartbeats_host_history_jobs_and_gpus():
    async def scenario() -> None:
        messages: list = []
        src = demo_source()
        app = make_app(src)
        async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
            screen = await site_screen(pilot, app)
            assert any(isinstance(m, HeartbeatReceived) and "site-1" in m.sites for m in messages)
            assert screen.site == "site-1"
            header = str(screen.query_one("#site-header").render())
            assert header.startswith("site-1  CONNECTED  last beat 1s ago") and "2 GPUs" in header
            beats = str(screen.query_one(BeatsView).render())
            assert "last beat 1s ago, every 5.0s" in beats and "25 heard" in beats and "registered 2h ago" in beats
            assert "CONNECTED since the TUI opened" in beats
            jobs = screen.query_one(SiteJobsTable)
            assert jobs.keys == [RUNNING, DONE]  # running now (its heartbeat) and run before (placed there)
            assert cell(jobs, RUNNING, "task") == "train running" and cell(jobs, DONE, "task") == "-"
            cpu = screen.query_one("#host-cpu", HostRow)
            expected = [e.data["info"]["host"]["cpu_percent"] for e in src.events
                        if e.type == "heartbeat" and e.data["site"] == "site-1"]
            assert cpu.values == expected, "every heartbeat's CPU, oldest first, once"
            assert cpu.render().plain.endswith(f"{expected[-1]:.0f}%")
            assert "16 cores · load 6.1 5.8 5.2 · mem 24.0/64.0 GiB" in str(screen.query_one("#host-detail").render())
            assert sorted(screen.query_one(GpuPanel).rows) == [("site-1", 0), ("site-1", 1)]  # its GPUs only

            src.push(beat(1000, NOW + 4, 99.0),
                     Event(1001, NOW + 5, "site_status", {"site": "site-1", "status": "STALE"}))
            await until(pilot, lambda: cpu.values[-1] == 99.0 and "STALE" in str(screen.query_one(BeatsView).render()),
                        "the new beat and the status change")
            assert cpu.render().plain.endswith("99%")
            assert str(screen.query_one(BeatsView).render()).index("STALE") < \
                str(screen.query_one(BeatsView).render()).index("CONNECTED since"), "newest first"

            jobs.focus()
            jobs.select(RUNNING)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.job_id == RUNNING,
                        "the site's job opened")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, SiteScreen), "back on the site screen")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, MainScreen), "back on the main screen")

    run(scenario())


def test_the_host_history_is_bounded_and_keeps_the_load_of_coalesced_heartbeats():
    queue = EventQueue()

    async def scenario() -> None:
        src = demo_source()
        app = make_app(src, queue=queue)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await site_screen(pilot, app, "site-2")
            n, before = HOST_HISTORY + 30, queue.coalesced
            for i in range(n):  # no await between: no drain either, every beat but the last coalesces
                queue.put(beat(2000 + i, NOW + 1 + i, float(i % 100), site="site-2"))
            assert len(queue) == 1 and queue.coalesced - before == n - 1
            app.drain()
            cpu = screen.query_one("#host-cpu", HostRow)
            await until(pilot, lambda: cpu.values and cpu.values[-1] == float((n - 1) % 100), "the beats applied")
            assert len(app.state.host["site-2"]) == HOST_HISTORY
            assert cpu.values[-HOST_HISTORY // 2:] == [float(i % 100) for i in range(n - HOST_HISTORY // 2, n)]

    run(scenario())
