"""The status line (server, connection state, counts, last update) and the disconnect banner."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual.widgets import Static

from flshell.tui import format as fmt

if TYPE_CHECKING:
    from flshell.tui.app import FlshellTui


def status_text(app: "FlshellTui", width: int = 200) -> str:
    """The status line, in words when it fits `width`, shorter when not."""
    state = app.state
    jobs = state.jobs.values()
    running = sum(1 for j in jobs if j.get("status") == "RUNNING")
    connected = sum(1 for s in state.sites.values() if s.get("status") == "CONNECTED")
    gpus = sum(len((s.get("info") or {}).get("gpus") or ()) for s in state.sites.values())
    marks = {"connected": "● connected", "connecting": "○ connecting", "disconnected": "✖ disconnected"}
    gpu_text = "no GPU" if not gpus else f"{gpus} GPU" + ("" if gpus == 1 else "s")
    long = [f"flshell {app.source.address}", marks.get(app.connection, app.connection),
            f"jobs {running} running / {len(state.jobs)}", f"sites {connected}/{len(state.sites)} connected",
            gpu_text] + (["read-only"] if app.readonly else [])
    short = [app.source.address, marks.get(app.connection, app.connection),
             f"jobs {running}/{len(state.jobs)} run", f"sites {connected}/{len(state.sites)} up",
             gpu_text] + (["ro"] if app.readonly else [])
    text = " │ ".join(long)
    return text if len(text) <= width else " │ ".join(short)


class StatusLine(Static):
    """One line at the top; its class (-connected, -connecting, -disconnected) picks its colours.
    The text is made when drawn, for the width it is drawn at (before the first layout there is
    none: a text made then would be the 200-column one, cut, until the next tick)."""

    def on_mount(self) -> None:
        app: FlshellTui = self.app  # type: ignore[assignment]
        app.ticked.subscribe(self, lambda _: self.show())
        self.show()

    def show(self) -> None:
        app: FlshellTui = self.app  # type: ignore[assignment]
        for state in ("connected", "connecting", "disconnected"):
            self.set_class(app.connection == state, f"-{state}")
        self.refresh()

    def render(self) -> str:
        app: FlshellTui = self.app  # type: ignore[assignment]
        return status_text(app, self.content_size.width or 200)


class Banner(Static):
    """Shown while disconnected: the error, the retry counter, how old the data on screen is."""

    def on_mount(self) -> None:
        app: FlshellTui = self.app  # type: ignore[assignment]
        app.ticked.subscribe(self, lambda _: self.show())
        self.show()

    def show(self) -> None:
        app: FlshellTui = self.app  # type: ignore[assignment]
        down = app.connection == "disconnected"
        self.display = down
        if not down:
            return
        state = app.state
        since = "no data yet" if state.loaded_at is None else \
            f"data from {fmt.age(state.clock() - state.loaded_at)} ago"
        left = max(0.0, app.retry_at - time.monotonic())
        self.update(f"✖ disconnected from {app.source.address} │ reconnecting: attempt {app.attempt}, "
                    f"next in {left:.0f}s │ {since} (greyed)\n{app.last_error}")
