"""Paging output taller than the terminal, as pgcli does: through $FLSHELL_PAGER, else $PAGER,
else `less -SRXF` (colours kept, long lines not folded, nothing paged that fits one screen).
Only at a terminal: the Runner never pages a script's output, a pipe or a file."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
from typing import Mapping

DEFAULT = "less -SRXF"
RESERVED = 2  # lines the prompt and its toolbar take back after the command


def pager_command(env: Mapping[str, str] = os.environ) -> list[str] | None:
    """The pager to run, as argv; None when there is none (an empty $FLSHELL_PAGER turns
    paging off; no less on PATH and no $PAGER either)."""
    for var in ("FLSHELL_PAGER", "PAGER"):
        if var in env:
            text = env[var].strip()
            return shlex.split(text) if text else None
    argv = shlex.split(DEFAULT)
    return argv if shutil.which(argv[0]) else None


def terminal_rows(fd: int | None) -> int:
    """The height of the terminal on `fd` (else of the process's, else 24)."""
    try:
        if fd is not None:
            return os.get_terminal_size(fd).lines
    except OSError:
        pass
    return shutil.get_terminal_size((80, 24)).lines


def too_tall(text: str, rows: int) -> bool:
    """Would `text` push its own first lines off a `rows`-line screen (the prompt included)?"""
    return text.count("\n") + (0 if text.endswith("\n") else 1) > max(1, rows - RESERVED)


def page(text: str, argv: list[str]) -> bool:
    """Show `text` in the pager; False if the pager could not be started (print it instead).
    Ctrl-C belongs to the pager meanwhile: it does not cancel the console's command."""
    env = dict(os.environ)
    env.setdefault("LESS", "-SRXF")
    in_main = threading.current_thread() is threading.main_thread()
    # a handler that does nothing, not SIG_IGN: the pager gets the default back on exec
    previous = signal.signal(signal.SIGINT, lambda *_: None) if in_main else None
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env, text=True, encoding="utf-8",
                                errors="replace")
    except OSError:
        if in_main:
            signal.signal(signal.SIGINT, previous)
        return False
    try:
        try:
            proc.communicate(text)
        except BrokenPipeError:  # the pager quit before reading it all (q)
            pass
        proc.wait()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    return True
