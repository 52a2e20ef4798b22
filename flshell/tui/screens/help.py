"""`?`: the TUI's keys, screen by screen (the one open first), read from the screens' bindings so
the help and the keys cannot drift apart."""

from __future__ import annotations

from typing import Any, Iterable

from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label

from flshell.tui.actions import MUTATING

KEY_NAMES = {"question_mark": "?", "slash": "/", "escape": "Esc", "end": "End", "tab": "Tab",
             "enter": "Enter", "ctrl+c": "Ctrl-C", "ctrl+q": "Ctrl-Q"}
DIALOG_KEYS = (("Tab / →", "in a path prompt: complete the path"), ("Enter", "ok (No is focused when asked)"),
               ("y / n", "answer yes / no"), ("Esc", "cancel"))


def key_name(key: str) -> str:
    return " / ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in key.split(","))


def binding_rows(bindings: Iterable[Any], readonly: bool = False) -> list[tuple[str, str]]:
    """(keys, what they do) per action, keys of the same action together, in binding order."""
    rows: dict[str, tuple[list[str], str]] = {}
    for b in bindings:
        if not isinstance(b, Binding):
            b = Binding(*b)
        if readonly and b.action in MUTATING:
            continue
        keys, text = rows.setdefault(b.action, ([], b.tooltip or b.description))
        keys.append(key_name(b.key))
    return [(" / ".join(keys), text) for keys, text in rows.values()]


def sections(app: Any, current: type[Screen], readonly: bool) -> list[tuple[str, list[tuple[str, str]]]]:
    """The help's sections: the screen open now, the others, then the keys of every screen."""
    from flshell.tui.screens.job import JobScreen
    from flshell.tui.screens.main import MainScreen
    from flshell.tui.screens.site import SiteScreen

    screens: list[tuple[str, type[Screen]]] = [
        ("Main screen: jobs, sites, GPUs", MainScreen),
        ("Job screen (Enter on a job): rounds, metrics, its sites, logs", JobScreen),
        ("Site screen (Enter on a site): heartbeats, host load, its jobs and GPUs", SiteScreen)]
    screens.sort(key=lambda s: s[1] is not current)
    out = [(title + ("  (this screen)" if cls is current else ""),
            binding_rows(cls.BINDINGS) + list(getattr(cls, "KEYS", ()))) for title, cls in screens]
    out.append(("Every screen", binding_rows(type(app).BINDINGS, readonly)))
    out.append(("Dialogs", list(DIALOG_KEYS)))
    return out


class HelpScreen(ModalScreen[None]):
    """The keys of each screen, the current one first; Esc, ? or q closes it."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss(None)", "Close")]

    def __init__(self, current: type[Screen], readonly: bool = False) -> None:
        super().__init__()
        self.current, self.readonly = current, readonly

    def compose(self):
        with VerticalScroll(id="dialog", classes="help") as box:
            box.border_title = "Keys"
            box.border_subtitle = "Esc closes"
            for title, rows in sections(self.app, self.current, self.readonly):
                yield Label(title, classes="help-section")
                with Grid(classes="keys"):
                    for key, text in rows:
                        yield Label(key, classes="key")
                        yield Label(text)
            if self.readonly:
                yield Label("read-only: submit, abort and clone are off", classes="hint")

    def on_click(self, event: Any) -> None:
        self.dismiss(None)
