"""The interactive console: a prompt-toolkit loop around the script Runner, with completion,
history, a live toolbar, confirmations, background notices and Ctrl-C that cancels a command."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.application import create_app_session
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import ThreadedCompleter
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

from runtime.client import threadio

from flshell.console.cache import CacheRefresher, ConsoleCache, Notice
from flshell.console.completer import ConsoleCompleter, split_words
from flshell.console.toolbar import STYLE, make_toolbar
from flshell.exit_codes import INTERRUPTED, JOB_UNSUCCESSFUL, OK

PROMPT = FormattedText([("bold", "flshell"), ("", "> ")])
WATCHING = ("watch", "wait_job", "tail_log")  # commands that show a job's end themselves


def default_history_file() -> Path:
    """$FLSHELL_HISTORY, else $XDG_STATE_HOME/flshell/history, else ~/.flshell_history."""
    if os.environ.get("FLSHELL_HISTORY"):
        return Path(os.environ["FLSHELL_HISTORY"]).expanduser()
    if os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ["XDG_STATE_HOME"]) / "flshell" / "history"
    return Path("~/.flshell_history").expanduser()


def _history(history_file: str | os.PathLike[str] | None) -> History:
    path = Path(history_file) if history_file is not None else default_history_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError as e:  # a read-only home: keep history for this session only
        print(f"note: history not saved ({path}: {e.strerror or e})", file=sys.stderr)
        return InMemoryHistory()
    return FileHistory(str(path))


def format_notice(notice: Notice, at: float | None = None) -> str:
    """One line for a background notice: `[12:03:04] job 3f2a1b2c hello-numpy COMPLETED`."""
    stamp = time.strftime("%H:%M:%S", time.localtime(at if at is not None else time.time()))
    if notice.kind == "job":
        text = f"job {notice.subject[:8]} {notice.name} {notice.status}".replace("  ", " ")
        if notice.status != "COMPLETED" and notice.detail:
            text += f": {notice.detail}"
    elif notice.kind == "site":
        if notice.status == "LOST":
            text = f"site {notice.subject} lost (no heartbeat)"
        elif notice.status == "DISCONNECTED":
            text = f"site {notice.subject} left"
        elif notice.previous is None:
            text = f"site {notice.subject} joined"
        else:
            text = f"site {notice.subject} is back"
    elif notice.status == "reconnecting":
        text = f"server {notice.subject} unreachable; reconnecting"
    else:
        text = f"reconnected to {notice.subject}"
    return f"[{stamp}] {text}"


class Notices:
    """Background notices: written above the prompt while it is shown (through patch_stdout,
    or into `stream` when one is given), held while a command runs and written after it,
    unless the command (a watch or wait of that job) already showed them."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.RLock()  # say() may run in a signal handler on the main thread
        self._at_prompt = False
        self._pending: list[tuple[Notice, float]] = []
        self._seen: tuple[str, str | None] | None = None  # (line, last) of a watch that saw its job end
        self._forgotten: set[str] = set()  # jobs whose notices are not to be told (forget_jobs)

    def _write(self, text: str) -> None:
        out = self.stream if self.stream is not None else sys.stdout  # the patch_stdout proxy at the prompt
        out.write(text + "\n")
        out.flush()

    def post(self, notice: Notice) -> None:
        """From any thread."""
        with self._lock:
            if notice.kind == "job" and notice.subject in self._forgotten:
                return
            if not self._at_prompt:
                self._pending.append((notice, time.time()))
            elif self._seen is None or not _shown_by(*self._seen, notice, everything=False):
                self._write(format_notice(notice))

    def say(self, text: str) -> None:
        """A line of the console itself (the welcome, "cancelled")."""
        with self._lock:
            self._write(text)

    @contextlib.contextmanager
    def prompting(self) -> Iterator[None]:
        """While the prompt is shown: notices go above it as they come."""
        with patch_stdout(raw=True):
            # Scripts of an embedded federation's jobs run on threads of this process and print
            # to their site logs through runtime.client.threadio's routed sys.stdout; keep that
            # routing on top of the prompt's proxy, or their output lands on the screen.
            threadio.install()
            with self._lock:
                self._at_prompt = True
                pending, self._pending = self._pending, []  # came between the command and the prompt
                for notice, at in pending:
                    if self._seen is None or not _shown_by(*self._seen, notice, everything=False):
                        self._write(format_notice(notice, at))
            try:
                yield
            finally:
                with self._lock:
                    self._at_prompt = False

    def forget_jobs(self, job_ids: list[str]) -> None:
        """Drop held notices about these jobs (shown already) and the ones still to come."""
        with self._lock:
            self._pending = [(n, at) for n, at in self._pending if not (n.kind == "job" and n.subject in job_ids)]
            self._forgotten.update(job_ids)

    def command_done(self, line: str | None, last: str | None = None, saw_end: bool = False) -> None:
        """Write the notices held while `line` ran, but not those it showed itself. With
        `saw_end` (a watch or wait_job of a job that ran to its end), the end of that job is
        not told later either, when the server's event reaches the console after the prompt."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._seen = (line, last) if line is not None and saw_end else None
            for notice, at in pending:
                if line is None or not _shown_by(line, last, notice):
                    self._write(format_notice(notice, at))


def _shown_by(line: str, last: str | None, notice: Notice, everything: bool = True) -> bool:
    """Did the command `line` show this notice itself (a watch, wait_job or tail_log of its job;
    with `everything`, a plain `watch` showed every job's)?"""
    if notice.kind != "job":
        return False
    for part in line.split(";"):
        words = split_words(part + " ").before
        if not words or words[0] not in WATCHING:
            continue
        refs = [w for w in words[1:] if not w.startswith("-")]
        if words[0] == "watch" and not refs:
            if everything:
                return True
            continue
        for ref in refs:
            if (ref == "last" and last == notice.subject) or (len(ref) >= 4 and notice.subject.startswith(ref)):
                return True
    return False


def _line_asker(input: Input | None, output: Output | None) -> Callable[..., str | None]:
    """`ask(message, on_eof=None)`: one whole line read at the terminal (no history, no
    completion): what was typed; None for Ctrl-C; `on_eof` for Ctrl-D (or input that ended)."""
    session: PromptSession[str] | None = None

    def ask(message: Any, on_eof: str | None = None) -> str | None:
        nonlocal session
        if session is None:
            session = PromptSession(input=input, output=output, style=STYLE)
        try:
            return session.prompt(message)
        except KeyboardInterrupt:
            return None
        except EOFError:
            return on_eof

    return ask


def _confirm_session(input: Input | None, output: Output | None) -> Callable[[str], bool]:
    """A yes/no question at the terminal. A whole line is read (so `yes` is one answer, not a
    `y` and a command `es`): y or yes answers yes; anything else, Enter, Ctrl-C, Ctrl-D no."""
    ask = _line_asker(input, output)

    def confirm(question: str) -> bool:
        question = question.rstrip()
        suffix = "" if question.endswith(("]", ")")) and "y/" in question.lower() else " [y/N] "
        answer = ask(FormattedText([("class:confirm", question), ("", suffix if suffix else " ")]))
        return (answer or "").strip().lower() in ("y", "yes")

    return confirm


def _may_leave(runner: Any, ask: Callable[..., str | None], workspace: Any) -> list[str] | None:
    """Leaving a console whose federation ends with it: with jobs unfinished, ask whether to
    abort them, leave them to go on the next time, or stay. None: stay; else leave (the ids of
    the jobs whose end it told). Ctrl-D at the question leaves them (a second Ctrl-D means out,
    and input that ended must not ask forever); Enter, `c` or Ctrl-C stays."""
    from flshell.console import leaving

    jobs = leaving.unfinished_jobs(runner.session)
    if not jobs:
        return []
    question = FormattedText([
        ("class:confirm", f"{leaving.count(jobs)}, and this federation ends with the console: "
                          "[a]bort them, [l]eave them to go on the next time, or [c]ancel?"),
        ("", " [a/l/C] ")])
    answer = (ask(question, on_eof="l") or "").strip().lower()
    if answer in ("a", "abort"):
        leaving.abort_all(runner.session, jobs, runner.note)
        return [j["job_id"] for j in jobs]
    if answer in ("l", "leave"):
        runner.note(leaving.left_note(jobs, workspace))
        return []
    runner.note("not leaving: the console stays open")
    return None


def _run_command(runner: Any, line: str, notices: Notices) -> int:
    """Run one line. The first Ctrl-C asks the command to stop (Runner.cancel: a watch, a wait,
    a followed log return); a second one interrupts whatever it is doing."""
    presses = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            echoed = notices.stream is None  # a terminal already shows "^C"
            notices.say(("" if echoed else "^C") + " cancelling (Ctrl-C again to interrupt)")
            runner.cancel()
        else:
            raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        return runner.run_line(line)
    except KeyboardInterrupt:
        notices.say("interrupted")
        return INTERRUPTED
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)


def _default_runner(session: Any, **kwargs: Any) -> Any:
    from flshell.console.script import Runner

    return Runner(session, out=sys.stdout, err=sys.stderr, **kwargs)


def run_repl(session: Any, address: str, description: str | None = None, *,
             runner_factory: Callable[..., Any] | None = None,
             history_file: str | os.PathLike[str] | None = None,
             input: Input | None = None, output: Output | None = None,
             notices: TextIO | None = None, refresh_interval: float = 2.0,
             registry: Any = None, embedded: str | os.PathLike[str] | None = None) -> int:
    """Run the console on `session` (connected to `address`) until `exit`, `bye` or Ctrl-D.

    `runner_factory(session, confirm=..., interactive=True)` makes the Runner (default: on
    stdout/stderr); `history_file` defaults to default_history_file(); `input`/`output` replace
    the terminal (tests: create_pipe_input() and DummyOutput()); `notices` is where the console's
    own lines go (the welcome, background notices; default: above the prompt). `embedded`: the
    workspace of the federation this process runs, which ends with the console: leaving with
    jobs running then asks whether to abort them or leave them to resume. Returns 0."""
    if registry is None:
        from flshell.console.commands import REGISTRY as registry
    threadio.install()  # before any prompt: what patch_stdout restores is routed too (see prompting)
    factory = runner_factory or _default_runner
    app_session = (create_app_session(input=input, output=output) if input is not None or output is not None
                   else contextlib.nullcontext())
    board = Notices(notices)
    cache = ConsoleCache()
    with app_session:
        ask = _line_asker(input, output)
        runner = factory(session, confirm=_confirm_session(input, output), interactive=True)
        if hasattr(runner, "clear_screen"):
            from prompt_toolkit.shortcuts import clear

            runner.clear_screen = clear

        def may_leave() -> bool:
            if embedded is None:
                return True
            told = _may_leave(runner, ask, embedded)
            if told:
                board.forget_jobs(told)  # their ends were just shown
            return told is not None

        prompt = PromptSession(
            PROMPT, history=_history(history_file), auto_suggest=AutoSuggestFromHistory(),
            completer=ThreadedCompleter(ConsoleCompleter(registry, cache, last_job=lambda: runner.last)),
            complete_while_typing=True, search_ignore_case=True,
            bottom_toolbar=make_toolbar(cache, address, lambda: getattr(runner, "fmt", None)),
            style=STYLE, refresh_interval=refresh_interval, enable_suspend=True,
            input=input, output=output)
        refresher = CacheRefresher(session, cache, interval=refresh_interval, on_notice=board.post,
                                   on_change=prompt.app.invalidate)
        with refresher:
            where = f" ({description})" if description else ""
            board.say(f"flshell — connected to {address}{where}. Type help.")
            while True:
                try:
                    with board.prompting():
                        line = prompt.prompt()
                except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line
                    continue
                except EOFError:  # Ctrl-D
                    if may_leave():
                        break
                    continue
                if not line.strip():
                    continue
                code = _run_command(runner, line, board)
                refresher.refresh_now()
                saw_end = code in (OK, JOB_UNSUCCESSFUL) and not getattr(runner, "cancelled", False)
                board.command_done(line, getattr(runner, "last", None), saw_end)
                if getattr(runner, "exit_requested", False):
                    if may_leave():
                        break
                    runner.exit_requested = False
            board.command_done(None)
    return OK
