"""Modal dialogs: a yes/no confirmation (No focused) and a path prompt with completion."""

from __future__ import annotations

import os
from pathlib import Path

from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, Static



class ConfirmScreen(ModalScreen[bool]):
    """`question` with No (focused, Esc) and a Yes button labelled `yes`; dismisses True/False."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel"), Binding("n", "dismiss(False)", "No", show=False),
                Binding("y", "dismiss(True)", "Yes", show=False)]

    def __init__(self, question: str, yes: str = "Yes", title: str = "Confirm") -> None:
        super().__init__()
        self.question, self.yes, self.title_text = question, yes, title

    def compose(self):
        with Vertical(id="dialog", classes="confirm") as box:
            box.border_title = self.title_text
            yield Static(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no", variant="primary")
                yield Button(self.yes, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class PathSuggester(Suggester):
    """Completes the last part of a path from the folder's entries (folders end with /)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        head, _, stem = value.rpartition("/")
        folder = Path(os.path.expanduser(head or ".")) if head or not value.startswith("/") else Path("/")
        try:
            names = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(folder)
                           if e.name.startswith(stem) and (stem.startswith(".") or not e.name.startswith(".")))
        except OSError:
            return None
        if not names or names[0] == stem:
            return None
        return (head + "/" if head or value.startswith("/") else "") + names[0]


class PathPrompt(ModalScreen[str | None]):
    """Asks for a path (→ or Tab accepts the completion); dismisses the path, or None on Esc."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"),
                Binding("tab", "complete", "Complete", show=False, priority=True)]

    def __init__(self, prompt: str, value: str = "", title: str = "Path") -> None:
        super().__init__()
        self.prompt, self.value, self.title_text = prompt, value, title

    def compose(self):
        with Vertical(id="dialog", classes="prompt") as box:
            box.border_title = self.title_text
            yield Label(self.prompt)
            yield Input(self.value, id="path", suggester=PathSuggester(), placeholder="a folder")
            yield Label("Enter: ok   Tab/→: complete   Esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def action_complete(self) -> None:
        field = self.query_one(Input)
        field.cursor_position = len(field.value)
        field.action_cursor_right()  # at the end, → accepts the suggestion

    @on(Input.Submitted)
    def _done(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
