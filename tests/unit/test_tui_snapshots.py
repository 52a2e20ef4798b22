"""SVG snapshots (pytest-textual-snapshot) of the main screen, the job screen and the abort dialog
at 80x24 and 160x48, fed by the scripted demo federation with a frozen clock.
Update them with `pytest tests/unit/test_tui_snapshots.py --snapshot-update` after looking."""

from __future__ import annotations

import pytest
from textual.widgets import Log

from flshell.tui import make_app
from flshell.tui.demo import RUNNING, demo_source
from flshell.tui.screens.dialogs import ConfirmScreen
from flshell.tui.screens.job import JobScreen
from flshell.tui.screens.main import MainScreen
from flshell.tui.testing import until
from flshell.tui.widgets.jobs import JobsTable

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


async def main_ready(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: app.connection == "connected" and app.queue.received >= len(app.source.events)
                and not len(app.queue) and isinstance(app.screen, MainScreen)
                and len(app.screen.query_one(JobsTable).keys) == 4, "the demo on screen", timeout=10)
    await pilot.pause(1.0)  # the batched updates (every 0.15 s) settle even on a loaded machine


async def job_ready(pilot) -> None:
    await main_ready(pilot)
    app = pilot.app
    app.screen.query_one(JobsTable).select(RUNNING)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail
                and app.screen.query_one(Log).line_count == 30, "the job screen with its log", timeout=10)
    await pilot.pause(0.3)


async def abort_ready(pilot) -> None:
    await main_ready(pilot)
    app = pilot.app
    app.screen.query_one(JobsTable).select(RUNNING)
    await pilot.press("a")
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the abort dialog", timeout=10)
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES)
def test_main_screen(snap_compare, size):
    assert snap_compare(make_app(demo_source()), terminal_size=size, run_before=main_ready)


@pytest.mark.parametrize("size", SIZES)
def test_job_screen(snap_compare, size):
    assert snap_compare(make_app(demo_source()), terminal_size=size, run_before=job_ready)


@pytest.mark.parametrize("size", SIZES)
def test_abort_dialog(snap_compare, size):
    assert snap_compare(make_app(demo_source()), terminal_size=size, run_before=abort_ready)
