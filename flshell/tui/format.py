"""Plain-text formatting for the TUI's cells: ages, durations, bars, sizes, load levels.
Pure functions, no styles: which style a level gets is app.tcss's business."""

from __future__ import annotations

from typing import Any

SPARK = "▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉█"
UTIL_LEVELS = (10.0, 75.0)   # nvitop's defaults: light below 10 %, heavy from 75 %
MEM_LEVELS = (10.0, 80.0)
FRESH_AGE = 10.0             # seconds: a heartbeat this recent is fresh
LATE_AGE = 30.0              # older than this (still CONNECTED) is late


def age(seconds: float | None) -> str:
    """`4s`, `12m`, `3h`, `2d`; `-` when unknown."""
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m"
    if s < 86400:
        return f"{s // 3600:.0f}h"
    return f"{s // 86400:.0f}d"


def duration(seconds: float | None) -> str:
    """`0.4s`, `42s`, `3:07`, `1:02:03`; `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def bar(fraction: float | None, width: int) -> str:
    """A bar of `width` cells in eighths: `████▌   `; blanks when unknown."""
    if fraction is None or width <= 0:
        return " " * max(width, 0)
    eighths = round(min(1.0, max(0.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[part] if part else "")
    return text.ljust(width)


def spark(values: list[float], width: int, top: float = 100.0) -> str:
    """The last `width` values as block characters on a fixed 0..top scale (utilisation does
    not rescale to its own range: 5 % stays low), right-aligned, blanks before the first."""
    tail = values[-width:] if width > 0 else []
    chars = [SPARK[min(len(SPARK) - 1, max(0, int(v / top * len(SPARK) - 1e-9)))] if v > 0 else " "
             for v in tail]
    return " " * (width - len(chars)) + "".join(chars)


def level(value: float | None, levels: tuple[float, float]) -> str:
    """`light`, `moderate` or `heavy` (or `none` when unknown), for a CSS component class."""
    if value is None:
        return "none"
    if value < levels[0]:
        return "light"
    return "moderate" if value < levels[1] else "heavy"


def freshness(status: str | None, seconds: float | None) -> str:
    """How fresh a site's heartbeat is: fresh / late / stale / lost / gone."""
    if status == "DISCONNECTED":
        return "gone"
    if status == "LOST":
        return "lost"
    if status == "STALE":
        return "stale"
    if seconds is None or seconds > LATE_AGE:
        return "stale"
    return "fresh" if seconds <= FRESH_AGE else "late"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def rounds_done(job: dict[str, Any]) -> tuple[int | None, int | None]:
    """(rounds finished, total) from a job dict: current_round counts from 0 and is the round in
    progress while `round_in_progress`, else the last one completed."""
    current, total = job.get("current_round"), job.get("total_rounds")
    if job.get("status") == "COMPLETED" and total:
        return total, total
    if current is None:
        return (0 if total else None), total
    return (current if job.get("round_in_progress") else current + 1), total


def round_label(job: dict[str, Any]) -> str:
    """`3/5` while round 3 of 5 runs or once it is the last done (people count from 1)."""
    current, total = job.get("current_round"), job.get("total_rounds")
    shown = "-" if current is None else str(min(current + 1, total or current + 1))
    return f"{shown}/{total}" if total else shown


def round_bar(job: dict[str, Any], width: int = 6) -> str:
    """The rounds done as a bar of `width` cells."""
    done, total = rounds_done(job)
    return bar(None if not total or done is None else done / total, width)


def host_mem_percent(host: dict[str, Any]) -> float | None:
    if host.get("memory_percent") is not None:
        return float(host["memory_percent"])
    used, total = host.get("mem_used"), host.get("mem_total")
    return 100.0 * used / total if used is not None and total else None


def metric(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4g}"
