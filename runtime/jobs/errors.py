"""Job errors that point at a file and JSON path, plus argument checks for component constructors."""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class JobError(Exception):
    """A problem in a job folder: `file` (relative to the job root), `json_path` and `message`."""

    def __init__(self, file: str | None, json_path: str | None, message: str) -> None:
        self.file = file
        self.json_path = json_path or None
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.json_path) if p]
        return ": ".join([*parts, " ".join(self.message.split())])

    def __reduce__(self):  # keep attributes across pickling (e.g. process pools)
        return (type(self), (self.file, self.json_path, self.message))


class ArgError(ValueError):
    """A component argument has a bad value; the builder reports it at `<where>.args.<arg>`."""

    def __init__(self, arg: str, expected: str, got: Any) -> None:
        self.arg = arg
        self.expected = expected
        self.got = got
        super().__init__(f"{arg}: expected {expected}, got {render(got)}")

    def __reduce__(self):
        return (type(self), (self.arg, self.expected, self.got))


def render(value: Any, limit: int = 60) -> str:
    """A short JSON-style rendering of a value for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join_path(base: str | None, key: str | int) -> str:
    """Extend a JSON path: `a` + 0 -> `a[0]`, `a` + `b` -> `a.b`, odd keys are quoted."""
    base = base or ""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if not _IDENT.match(key):
        return f"{base}[{json.dumps(key)}]"
    return f"{base}.{key}" if base else key


def names(items: Iterable[str], limit: int = 12) -> str:
    """Comma-separated names for "(known: ...)" hints."""
    items = list(items)
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any) -> int:
    """Return `value` if it is an int >= 1 (bool is not an int), else raise ArgError."""
    if not _is_int(value) or value < 1:
        raise ArgError(name, "a positive integer", value)
    return value


def check_non_negative_number(name: str, value: Any) -> float | int:
    """Return `value` if it is a finite int or float >= 0 (bool is not a number), else raise ArgError."""
    ok = (_is_int(value) or isinstance(value, float)) and value == value and value >= 0
    if not ok or value == float("inf"):
        raise ArgError(name, "a non-negative number", value)
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return `value` if it is one of `choices`, else raise ArgError listing them."""
    choices = list(choices)
    if not any(value == c and type(value) is type(c) for c in choices):
        raise ArgError(name, "one of " + ", ".join(render(c) for c in choices), value)
    return value
