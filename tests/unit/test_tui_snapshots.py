"""SVG snapshots (pytest-textual-snapshot) of the main screen, the job screen, the site screen, the
help and the abort dialog at 80x24 and 160x48, fed by the scripted demo federation with a frozen clock.
Update them with `pytest tests/unit/test_tui_snapshots.py --snapshot-update` after looking.

Each waits for a state, never for a time: every scripted event applied (the app's last seq),
the widgets filled from it, then the app idle (`pilot.pause()`); snap_compare also waits for
animations (the log tabs' underline) before it takes the picture."""

from __future__ import annotations

import pytest
from textual.widgets import Log

from flshell.tui import make_app
from flshell.tui.demo import RUNNING, demo_source
from flshell.tui.screens.dialogs import ConfirmScreen
from flshell.tui.screens.help import HelpScreen
from flshell.tui.screens.job import JobScreen
from flshell.tui.screens.main import MainScreen
from flshell.tui.screens.site import SiteScreen
from flshell.tui.testing import until
from flshell.tui.widgets.gpus import GpuPanel
from flshell.tui.widgets.job_detail import MetricsPlot
from flshell.tui.widgets.jobs import JobsTable
from flshell.tui.widgets.log_tail import LogTail
from flshell.tui.widgets.site_detail import SiteJobsTable
from flshell.tui.widgets.sites import SitesTable

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


async def main_ready(pilot) -> None:
    app = pilot.app
    last = max(e.seq for e in app.source.events)
    await until(pilot, lambda: app.connection == "connected" and app.state.last_seq == last
                and not len(app.queue) and isinstance(app.screen, MainScreen)
                and len(app.screen.query_one(JobsTable).keys) == 4
                and len(app.screen.query_one(GpuPanel).rows) == 3, "the demo on screen", timeout=30)
    await pilot.pause()  # the messages of the last batch handled, the tables measured


async def job_ready(pilot) -> None:
    await main_ready(pilot)
    app = pilot.app
    app.screen.query_one(JobsTable).select(RUNNING)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail
                and app.screen.query_one(Log).line_count == 30 and not app.screen.query_one(LogTail).note
                and len(app.screen.query_one(MetricsPlot).rows) == 2, "the job screen with its log",
                timeout=30)
    await pilot.pause()


async def abort_ready(pilot) -> None:
    await main_ready(pilot)
    app = pilot.app
    app.screen.query_one(JobsTable).select(RUNNING)
    await pilot.press("a")
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.focused is not None
                and app.focused.id == "no", "the abort dialog, No focused", timeout=30)
    await pilot.pause()


async def site_ready(pilot) -> None:
    await main_ready(pilot)
    app = pilot.app
    sites = app.screen.query_one(SitesTable)
    sites.focus()
    sites.select("site-1")
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, SiteScreen) and len(app.screen.query_one(SiteJobsTable).keys) == 2
                and len(app.screen.query_one(GpuPanel).rows) == 2, "the site screen", timeout=30)
    await pilot.pause()


async def help_ready(pilot) -> None:
    await main_ready(pilot)
    app = pilot.app
    await pilot.press("question_mark")
    await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help", timeout=30)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_site_screen(snap_compare, size):
    assert snap_compare(make_app(demo_source()), terminal_size=size, run_before=site_ready)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, size):
    assert snap_compare(make_app(demo_source()), terminal_size=size, run_before=help_ready)


@pytest.mark.parametrize("size", SIZES)
def test_main_screen(snap_compare, size):
    assert snap_compare(make_app(demo_source()), terminal_size=size, run_before=main_ready)


@pytest.mark.parametrize("size", SIZES)
def test_job_screen(snap_compare, size):
    assert snap_compare(make_app(demo_source()), terminal_size=size, run_before=job_ready)


@pytest.mark.parametrize("size", SIZES)
def test_abort_dialog(snap_compare, size):
    assert snap_compare(make_app(demo_source()), terminal_size=size, run_before=abort_ready)
