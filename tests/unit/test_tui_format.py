"""The TUI's plain-text cell formatting."""

from __future__ import annotations

from flshell.tui import format as fmt


def test_ages_and_durations():
    assert [fmt.age(s) for s in (None, 0.4, 59, 61, 3700, 90000)] == ["-", "0s", "59s", "1m", "1h", "1d"]
    assert [fmt.duration(s) for s in (None, 0.45, 42, 187, 3723)] == ["-", "0.5s", "42s", "3:07", "1:02:03"]


def test_bars_and_sparklines_have_fixed_widths_and_scales():
    assert fmt.bar(0.5, 4) == "██  " and fmt.bar(1.0, 3) == "███" and fmt.bar(None, 3) == "   "
    assert fmt.bar(0.5, 1) == "▌" and fmt.bar(0.01, 2) == "  "
    assert fmt.spark([0, 50, 100], 5) == "   ▄█"  # right-aligned; 0 is blank; a fixed 0..100 scale
    assert fmt.spark([5.0, 6.0], 2) == "▁▁"      # 5 % stays low: no rescaling to its own range


def test_levels_and_freshness():
    assert [fmt.level(v, fmt.UTIL_LEVELS) for v in (None, 5, 50, 90)] == ["none", "light", "moderate", "heavy"]
    assert fmt.freshness("CONNECTED", 2) == "fresh" and fmt.freshness("CONNECTED", 20) == "late"
    assert fmt.freshness("CONNECTED", 40) == "stale" and fmt.freshness("STALE", 1) == "stale"
    assert fmt.freshness("LOST", 1) == "lost" and fmt.freshness("DISCONNECTED", 1) == "gone"


def test_rounds_done_and_their_label():
    running = {"status": "RUNNING", "current_round": 2, "total_rounds": 5, "round_in_progress": True}
    assert fmt.rounds_done(running) == (2, 5) and fmt.round_label(running) == "3/5"
    stored = {"status": "RUNNING", "current_round": 2, "total_rounds": 5}  # the last completed
    assert fmt.rounds_done(stored) == (3, 5)
    assert fmt.rounds_done({"status": "COMPLETED", "current_round": 4, "total_rounds": 5}) == (5, 5)
    assert fmt.round_label({"total_rounds": 5}) == "-/5"
