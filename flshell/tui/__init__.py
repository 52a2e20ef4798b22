"""`flshell tui`: a live terminal UI (Textual) for jobs, site heartbeats, per-GPU load and logs."""

from flshell.tui.app import FlshellTui, make_app
from flshell.tui.data import DataSource, ScriptedSource, SessionSource, Snapshot

__all__ = ["DataSource", "FlshellTui", "ScriptedSource", "SessionSource", "Snapshot", "make_app"]
