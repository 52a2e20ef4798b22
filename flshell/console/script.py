"""One runner for every way commands arrive: the REPL's lines, `-c`, `-f FILE`, stdin, `source FILE`.

A script is commands separated by newlines or `;`, with `#` comments. The whole script is
parsed before anything runs, so a typo on line 5 does not leave lines 1-4 half done; then the
commands run in order and the first failure stops it (`keep_going` runs the rest and still
returns the first failure's exit code). Exit codes (flshell.exit_codes): 0 ok, 1 a command
failed, 2 usage error, 3 the server could not be reached, 4 `wait_job` saw the job end other
than COMPLETED, 130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from flshell.console import render, vertical
from flshell.console.commands import REGISTRY, Cancelled, Command, CommandFailed, UsageError, unknown_command
from flshell.exit_codes import CONNECTION, INTERRUPTED, JOB_FAILED, OK, USAGE
from runtime.admin import AdminError, AmbiguousJob, ServerUnreachable, UnknownJob

FORMATS = ("table", "json")
MAX_SOURCE_DEPTH = 16


@dataclass
class Step:
    """One command of a script: where it is, its words, and what parsing made of them."""

    line: int
    words: list[str]
    cmd: Command | None = None
    args: argparse.Namespace | None = None
    error: str | None = None  # the usage error, when it cannot run as written


def split_line(line: str) -> list[list[str]]:
    """The commands on one line (`;` separates them, `#` starts a comment, shell quoting);
    ValueError for unbalanced quotes."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = []
    words: list[str] = []
    for token in lexer:
        if token and set(token) == {";"}:
            if words:
                commands.append(words)
            words = []
        else:
            words.append(token)
    if words:
        commands.append(words)
    return commands


def parse_words(words: list[str]) -> tuple[Command, argparse.Namespace]:
    """The command and its parsed arguments; UsageError if it cannot run as written.
    `CMD -h` / `CMD --help` is `help CMD`."""
    name, *rest = words
    cmd = REGISTRY.get(name)
    if cmd is None:
        raise UsageError(unknown_command(name))
    if "-h" in rest or "--help" in rest:
        return REGISTRY["help"], argparse.Namespace(command=name)
    try:
        return cmd, cmd.parser.parse_args(rest)
    except UsageError as e:
        raise UsageError(f"{name}: {e}") from None


def parse_script(text: str) -> list[Step]:
    """Every command of `text`, parsed; a step that cannot run carries its usage error."""
    steps: list[Step] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            commands = split_line(line)
        except ValueError as e:
            steps.append(Step(number, [], error=f"{e} in {line.strip()!r}"))
            continue
        for words in commands:
            step = Step(number, words)
            try:
                step.cmd, step.args = parse_words(words)
            except UsageError as e:
                step.error = str(e)
            steps.append(step)
    return steps


def _ask_on_terminal(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


class Runner:
    """Runs command lines and scripts against a Session, remembering `last` and the output
    format. `session` may also be a function that returns one, called the first time a
    command needs the server (so `help` never starts anything). Data goes to `out`, errors
    and notes to `err`. Destructive commands run after `confirm(question)` says yes, or with
    -y, or with `assume_yes`; with none of those (a script, no terminal) they are refused.
    `pager` (default: `interactive`): output taller than the terminal `out` is paged (never
    when `out` is not a terminal); `expanded` ("off", "on", "auto"): tables as vertical records."""

    def __init__(self, session: Any, out: TextIO | None = None, err: TextIO | None = None, fmt: str = "table",
                 confirm: Callable[[str], bool] | None = None, interactive: bool = False,
                 assume_yes: bool = False, echo: bool = False, pager: bool | None = None,
                 expanded: str = "off") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if expanded not in vertical.EXPANDED_MODES:
            raise ValueError(f"expanded must be one of {', '.join(vertical.EXPANDED_MODES)}, got {expanded!r}")
        self._session = session
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.fmt = fmt
        self.confirm = confirm
        self.interactive = interactive
        self.assume_yes = assume_yes
        self.echo = echo  # print each command on `err` before it runs (`> list_jobs`)
        self.pager = interactive if pager is None else pager
        self.pager_command: list[str] | None = None  # None: flshell.console.pager.pager_command()
        self.expanded = expanded
        self.clear_screen: Callable[[], None] | None = None  # the REPL's; else ANSI at a terminal
        self.last: str | None = None  # the job most recently submitted or cloned here
        self.exit_requested = False
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._closers: list[Callable[[], None]] = []
        self._sources: list[Path] = []  # the files being sourced, outermost first
        self._keep_going = False

    @property
    def session(self) -> Any:
        if callable(self._session) and not hasattr(self._session, "list_jobs"):
            self._session = self._session()  # a lazy connection: made on first use
        return self._session

    # ---- output ------------------------------------------------------------------------------

    def emit(self, doc: Any, human: Any = None) -> None:
        """A command's result: `doc` as one JSON line in json format; otherwise `human` (a
        string, a rich renderable, or a function making one; None prints nothing)."""
        if self.fmt == "json":
            print(render.to_json(doc), file=self.out, flush=True)
            return
        shown = human() if callable(human) else human
        if shown is None:
            return
        if not isinstance(shown, str):
            shown = vertical.expand(shown, self.expanded, render.screen_width(self.out))
        if self.pager and render.is_terminal(self.out) and self._paged(shown):
            return
        if isinstance(shown, str):
            print(shown, file=self.out, flush=True)
        else:
            render.print_to(self.out, shown)

    def _paged(self, shown: Any) -> bool:
        """Show `shown` in the pager if it is taller than the terminal; False: print it."""
        from flshell.console import pager

        text = shown + "\n" if isinstance(shown, str) else render.terminal_text(shown, self.out)
        try:
            fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if not pager.too_tall(text, pager.terminal_rows(fd)):
            return False
        argv = self.pager_command if self.pager_command is not None else pager.pager_command()
        if not argv:
            return False
        self.out.flush()
        return pager.page(text, argv)

    def stream(self, doc: Any, line: str | None) -> None:
        """One item of a streaming command (watch, tail_log -f): a JSON line, or `line`."""
        if self.fmt == "json":
            print(render.to_json(doc), file=self.out, flush=True)
        elif line is not None:
            print(line, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    # ---- jobs --------------------------------------------------------------------------------

    def job(self, ref: str) -> str:
        """A job reference as typed: an id, a unique prefix (the server resolves it) or `last`."""
        if ref != "last":
            return ref
        if self.last is None:
            raise UsageError("'last' names the job most recently submitted (or cloned) here, and there is "
                             "none yet; give a job id (list_jobs shows them)")
        return self.last

    # ---- cancelling --------------------------------------------------------------------------

    def cancel(self) -> None:
        """Make the running watch / wait_job / tail_log -f return now (Ctrl-C). Thread-safe.
        A script stops after the command it cancelled."""
        with self._lock:
            self._cancel.set()
            closers = list(self._closers)
        for close in closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing a stream that already ended is fine
                pass

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @contextmanager
    def cancellable(self, close: Callable[[], None]) -> Iterator[None]:
        """While inside, cancel() calls `close` (which must make the blocking read return)."""
        with self._lock:
            self._closers.append(close)
            already = self._cancel.is_set()
        if already:
            close()
        try:
            yield
        finally:
            with self._lock:
                self._closers.remove(close)

    # ---- running -----------------------------------------------------------------------------

    def run_line(self, line: str) -> int:
        """One line as typed at the prompt (`;` may separate several commands); its exit code."""
        return self.run_script(line)

    def run_file(self, path: str | Path, keep_going: bool = False) -> int:
        """`flshell -f FILE`: like `source FILE`, with its own keep_going."""
        if not self._sources:
            self._cancel.clear()
        saved, self._keep_going = self._keep_going, keep_going
        try:
            return self._run_step_safely("source", lambda: self.source(Path(path)))
        finally:
            self._keep_going = saved

    def run_script(self, text: str, keep_going: bool = False, name: str | None = None) -> int:
        """Run every command of `text`; the first failure's exit code, or 0. Errors are
        located by `name:LINE:` (a file), `line N:` (several lines) or not at all (one line)."""
        steps = parse_script(text)
        multi = len(text.splitlines()) > 1

        def where(step: Step) -> str:
            return f"{name}:{step.line}: " if name else f"line {step.line}: " if multi else ""

        bad = [s for s in steps if s.error is not None]
        if bad and not keep_going:
            self.note(f"error: {where(bad[0])}{bad[0].error}" + (" (nothing ran)" if len(steps) > 1 else ""))
            return USAGE
        if not self._sources:
            self._cancel.clear()
        saved, self._keep_going = self._keep_going, keep_going
        first = OK
        try:
            for i, step in enumerate(steps):
                if step.error is not None:
                    self.note(f"error: {where(step)}{step.error}")
                    code = USAGE
                else:
                    code = self._run(step, where(step))
                first = first or code
                if code != OK and not keep_going:
                    return code
                if self.exit_requested:
                    break
                if self.cancelled and i < len(steps) - 1:
                    self.note("cancelled: the rest of the commands did not run")
                    return first or INTERRUPTED
        finally:
            self._keep_going = saved
        return first

    def source(self, path: Path) -> int:
        """Run the commands in a file (`source FILE`); files may source others, not themselves."""
        resolved = path.resolve()
        if resolved in self._sources:
            chain = " -> ".join(p.name for p in [*self._sources, resolved])
            raise UsageError(f"{path} is already being sourced ({chain}); a file cannot source itself")
        if len(self._sources) >= MAX_SOURCE_DEPTH:
            raise UsageError(f"sourcing {path} would nest files {MAX_SOURCE_DEPTH + 1} deep; is there a loop?")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise CommandFailed(f"cannot read {path}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise CommandFailed(f"{path} is not a UTF-8 text file of commands ({e.reason})") from None
        self._sources.append(resolved)
        try:
            return self.run_script(text, keep_going=self._keep_going, name=str(path))
        finally:
            self._sources.pop()

    def _run(self, step: Step, where: str) -> int:
        cmd, args = step.cmd, step.args
        assert cmd is not None and args is not None
        if self.echo:
            self.note(f"> {shlex.join(step.words)}")

        def call() -> int:
            if cmd.supported and cmd.destructive and not (getattr(args, "yes", False) or self.assume_yes):
                if not self._confirmed(cmd, args):
                    self.note(f"{cmd.name}: not confirmed; nothing was done")
                    return JOB_FAILED
            return cmd.fn(self, args)

        return self._run_step_safely(cmd.name, call, where)

    def _run_step_safely(self, name: str, call: Callable[[], int], where: str = "") -> int:
        """Run one command; every error becomes a line on `err` and an exit code."""
        prefix = f"error: {where}{name}: "
        try:
            return call()
        except UsageError as e:
            self.note(f"{prefix}{e}")
            return USAGE
        except Cancelled as e:
            self.note(f"{name}: {e}")
            return INTERRUPTED
        except KeyboardInterrupt:
            self.cancel()
            self.note(f"{name}: interrupted")
            return INTERRUPTED
        except ServerUnreachable as e:
            self.note(f"{prefix}{e}")
            return CONNECTION
        except UnknownJob as e:
            text = str(e)
            text = f"no job matches {text[7:]}" if text.startswith("no job ") else text
            self.note(f"{prefix}{text}; list_jobs shows the ids")
            return JOB_FAILED
        except AmbiguousJob as e:
            self.note(f"{prefix}{e}; give more characters of the id")
            return JOB_FAILED
        except (AdminError, CommandFailed, TimeoutError, OSError) as e:
            self.note(f"{prefix}{e}")
            return JOB_FAILED
        except Exception as e:  # noqa: BLE001 - a bug in a command must not end the shell
            self.note(f"{prefix}internal error ({type(e).__name__}: {e}); please report it")
            return JOB_FAILED

    def _confirmed(self, cmd: Command, args: argparse.Namespace) -> bool:
        confirm = self.confirm
        if confirm is None and self.interactive and sys.stdin.isatty():
            confirm = _ask_on_terminal
        if confirm is None:
            raise UsageError(f"it asks for confirmation, and there is no terminal to ask on; add -y "
                             f"(`{cmd.name} -y ...`) to run it from a script")
        question = cmd.question(self, args) if cmd.question is not None else f"run {cmd.name}?"
        return bool(confirm(question))


def run_script(session: Any, text: str, out: TextIO | None = None, err: TextIO | None = None,
               keep_going: bool = False, **options: Any) -> int:
    """Run a script of admin commands on a new Runner; returns its exit code. `options` are
    Runner's (fmt, confirm, interactive, assume_yes, echo)."""
    return Runner(session, out, err, **options).run_script(text, keep_going=keep_going)
