"""The TUI's keys for the console's commands: which key runs which registry command, whether it
changes the server (hidden by --readonly) and whether it asks first (the registry's
`destructive`, the same policy as the console's confirmation)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TuiAction:
    key: str
    action: str          # the App's action_<name>
    label: str           # the footer's word
    command: str | None  # the console registry's command name (flshell.console.commands)
    mutating: bool       # changes the server: hidden with --readonly
    needs_job: bool      # acts on the selected job
    tip: str = ""        # what the key does, in the TUI's words (the help screen)

    @property
    def confirm(self) -> bool:
        cmd = registry().get(self.command or "")
        return bool(cmd is not None and cmd.destructive)


ACTIONS: tuple[TuiAction, ...] = (
    TuiAction("s", "submit", "Submit", "submit_job", mutating=True, needs_job=False,
              tip="submit a job folder (asks for the path)"),
    TuiAction("a", "abort", "Abort", "abort_job", mutating=True, needs_job=True,
              tip="abort the selected job (asks first)"),
    TuiAction("c", "clone", "Clone", "clone_job", mutating=True, needs_job=True,
              tip="submit the selected job again"),
    TuiAction("d", "download", "Download", "download_job", mutating=False, needs_job=True,
              tip="download the selected job's results (asks for a folder)"),
    TuiAction("l", "logs", "Logs", "tail_log", mutating=False, needs_job=True,
              tip="the selected job's logs; on the job screen, the next log"),
)
BY_ACTION = {a.action: a for a in ACTIONS}
MUTATING = frozenset(a.action for a in ACTIONS if a.mutating)
_FALLBACK_DESTRUCTIVE = {"abort_job"}


def registry() -> dict:
    """The console's command registry ({} if the console cannot be imported)."""
    try:
        from flshell.console.commands import REGISTRY
    except Exception:  # noqa: BLE001 - the TUI still works; help falls back to labels
        return {}
    return REGISTRY


def needs_confirmation(action: str) -> bool:
    a = BY_ACTION.get(action)
    if a is None:
        return False
    return a.confirm if registry() else a.command in _FALLBACK_DESTRUCTIVE
