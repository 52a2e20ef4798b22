"""The console's bottom toolbar (server, sites up/total, jobs, connection state) and its style."""

from __future__ import annotations

from typing import Callable

from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.styles import Style

from flshell.console.cache import ConsoleCache

# prompt-toolkit class names -> looks; the only colours of the console live here.
STYLE = Style.from_dict({
    "bottom-toolbar": "noreverse bg:#303030 #d0d0d0",
    "bottom-toolbar.ok": "#5fd75f bold",
    "bottom-toolbar.warn": "#ffaf00 bold",
    "bottom-toolbar.bad": "#ff5f5f bold",
    "bottom-toolbar.dim": "#8a8a8a",
    "notice": "#8a8a8a",
    "confirm": "bold",
})


def toolbar_text(cache: ConsoleCache, address: str, fmt: str | None = None) -> FormattedText:
    """` ● connected 127.0.0.1:8003 │ sites 1/3 (1 stale) │ jobs 1 running, 1 waiting │ format json`:
    sites connected (heartbeats fresh) of those the server knows, and how many are late."""
    s = cache.summary()
    if s.state == "connected":
        state = [("class:bottom-toolbar.ok", " ● connected ")]
    elif s.state == "reconnecting":
        state = [("class:bottom-toolbar.bad", f" ● reconnecting ({s.retries}) ")]
    else:
        state = [("class:bottom-toolbar.warn", " ○ connecting ")]
    sep = ("class:bottom-toolbar.dim", " │ ")
    sites_style = "" if s.sites_up == s.sites_total else "class:bottom-toolbar.warn"
    sites = f"sites {s.sites_up}/{s.sites_total}" + (f" ({s.sites_stale} stale)" if s.sites_stale else "")
    jobs = f"jobs {s.jobs_running} running"
    if s.jobs_waiting:
        jobs += f", {s.jobs_waiting} waiting"
    parts = state + [("", address), sep, (sites_style, sites), sep, ("", jobs)]
    if fmt and fmt != "table":
        parts += [sep, ("", f"format {fmt}")]
    if s.state == "reconnecting" and s.updated_at is not None:
        parts += [sep, ("class:bottom-toolbar.dim", "stale data")]
    return FormattedText(parts)


def make_toolbar(cache: ConsoleCache, address: str,
                 fmt: Callable[[], str | None] = lambda: None) -> Callable[[], FormattedText]:
    """The `bottom_toolbar` callable for a PromptSession."""
    return lambda: toolbar_text(cache, address, fmt())
