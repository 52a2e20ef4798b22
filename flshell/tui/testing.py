"""Helpers for driving the TUI headless in tests (`App.run_test()` + Pilot), with bounded waits."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Coroutine

from textual.pilot import Pilot

from flshell.tui.widgets.tables import SyncTable


async def until(pilot: Pilot, predicate: Callable[[], Any], what: str, timeout: float = 30.0,
                step: float = 0.05) -> None:
    """Let the app run until `predicate()` is true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await pilot.pause(step)


def cell(table: SyncTable, row: str, column: str) -> str:
    """A table cell's text."""
    value = table.get_cell(row, column)
    return getattr(value, "plain", str(value))


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a test's async body (no pytest-asyncio needed)."""
    return asyncio.run(coro)
