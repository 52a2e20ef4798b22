"""Scripted admin commands (`flshell -c "submit_job JOB; wait_job last"`): parse, run, exit codes.

A script is commands separated by newlines or `;`, with `#` comments. The whole script is
parsed before anything runs, so a typo on line 5 does not leave lines 1-4 half done; then the
commands run in order and the first failure stops it. `last` stands for the job most recently
submitted (or cloned) by this script.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from flshell.exit_codes import (  # exit codes of a script, named once for every command
    CONNECTION as UNREACHABLE,
    JOB_FAILED as FAILED,
    JOB_UNSUCCESSFUL,
    OK,
    USAGE,
)
from runtime.admin import AdminError, ServerUnreachable, Session


class UsageError(Exception):
    """A command line that cannot run as written."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (usage: {self.format_usage().strip().removeprefix('usage: ')})")

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        raise UsageError(message or f"{self.prog}: cannot run")


@dataclass
class Command:
    name: str
    help: str
    parser: _Parser
    run: Callable[["ScriptRunner", argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *args: tuple[tuple[str, ...], dict[str, Any]]):
    """Register a command: its name, one line of help, and argparse arguments."""
    parser = _Parser(prog=name, description=help, add_help=False)
    for flags, kwargs in args:
        parser.add_argument(*flags, **kwargs)

    def register(fn: Callable[["ScriptRunner", argparse.Namespace], int]):
        COMMANDS[name] = Command(name, help, parser, fn)
        return fn

    return register


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, kwargs


def split_script(text: str) -> list[tuple[int, list[str]]]:
    """(line number, words) for every command in `text`; UsageError for unbalanced quotes."""
    commands: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines() or [text], start=1):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        try:
            for token in lexer:
                if token and set(token) == {";"}:
                    if words:
                        commands.append((number, words))
                    words = []
                else:
                    words.append(token)
        except ValueError as e:
            raise UsageError(f"line {number}: {e}") from None
        if words:
            commands.append((number, words))
    return commands


def parse_script(text: str) -> list[tuple[int, Command, argparse.Namespace]]:
    """Every command of the script, parsed; UsageError (naming the line) for the first bad one."""
    parsed = []
    for number, words in split_script(text):
        name, *rest = words
        cmd = COMMANDS.get(name)
        if cmd is None:
            close = difflib.get_close_matches(name, COMMANDS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(sorted(COMMANDS))})"
            raise UsageError(f"line {number}: unknown command {name!r}{hint}")
        try:
            parsed.append((number, cmd, cmd.parser.parse_args(rest)))
        except UsageError as e:
            raise UsageError(f"line {number}: {name}: {e}") from None
    return parsed


class ScriptRunner:
    """Runs parsed commands against a Session, remembering `last`."""

    def __init__(self, session: Session, out: TextIO, err: TextIO) -> None:
        self.session = session
        self.out = out
        self.err = err
        self.last: str | None = None

    def job(self, ref: str) -> str:
        if ref != "last":
            return ref
        if self.last is None:
            raise UsageError("'last' names the job most recently submitted by this script, and none was yet")
        return self.last

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def run(self, text: str) -> int:
        try:
            script = parse_script(text)
        except UsageError as e:
            print(f"error: {e}", file=self.err)
            return USAGE
        for number, cmd, args in script:
            try:
                code = cmd.run(self, args)
            except UsageError as e:
                print(f"error: line {number}: {cmd.name}: {e}", file=self.err)
                return USAGE
            except ServerUnreachable as e:
                print(f"error: {e}", file=self.err)
                return UNREACHABLE
            except (AdminError, TimeoutError, OSError) as e:
                print(f"error: line {number}: {cmd.name}: {e}", file=self.err)
                return FAILED
            if code != OK:
                return code
        return OK


def run_script(session: Session, text: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a script of admin commands; returns an exit code (OK, FAILED, USAGE, UNREACHABLE,
    JOB_UNSUCCESSFUL). Data goes to `out`, errors to `err`."""
    return ScriptRunner(session, out, err).run(text)


# ---- formatting ------------------------------------------------------------------------------


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _label(job: dict[str, Any]) -> str:
    return f"job {job.get('short_id') or str(job.get('job_id', ''))[:8]} ({job.get('name')})"


def _round(job: dict[str, Any]) -> str:
    current, total = job.get("current_round"), job.get("total_rounds")
    done = "-" if current is None else str(current + 1)
    return f"{done}/{total}" if total else done


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _status_line(job: dict[str, Any]) -> str:
    reason = job.get("reason")
    return f"{_label(job)} {job.get('status')}" + (f": {reason}" if reason else "")


# ---- commands --------------------------------------------------------------------------------


@command("submit_job", "upload a job folder; prints the new job id", arg("folder", metavar="FOLDER"))
def _submit_job(r: ScriptRunner, a: argparse.Namespace) -> int:
    r.last = r.session.submit_job(a.folder)
    r.print(r.last)
    return OK


@command("list_jobs", "list the server's jobs",
         arg("--name", metavar="NAME", help="only jobs of this name"),
         arg("--status", metavar="STATUS", help="only jobs in this status"),
         arg("--limit", metavar="N", type=int, help="at most this many (newest first)"))
def _list_jobs(r: ScriptRunner, a: argparse.Namespace) -> int:
    jobs = r.session.list_jobs(name=a.name, status=a.status, limit=a.limit)
    rows = [["ID", "NAME", "STATUS", "ROUND", "SUBMITTER", "SUBMITTED", "REASON"]]
    rows += [[j.get("short_id") or j["job_id"][:8], str(j.get("name")), str(j.get("status")), _round(j),
              str(j.get("submitter")), _when(j.get("submitted_at")), j.get("reason") or ""] for j in jobs]
    for line in _table(rows):
        r.print(line)
    return OK


@command("show_job", "a job's status, rounds and failure details", arg("job", metavar="ID"))
def _show_job(r: ScriptRunner, a: argparse.Namespace) -> int:
    job = r.session.get_job(r.job(a.job))
    fields = [("job", job.get("job_id")), ("name", job.get("name")), ("status", job.get("status")),
              ("reason", job.get("reason") or "-"), ("submitter", job.get("submitter")),
              ("submitted", _when(job.get("submitted_at"))), ("started", _when(job.get("started_at"))),
              ("ended", _when(job.get("ended_at"))), ("round", _round(job)),
              ("sites", ", ".join(job.get("sites") or []) or "-")]
    for key, value in fields:
        r.print(f"{key:<10} {value}")
    for rnd in job.get("rounds") or []:
        metrics = " ".join(f"{k}={_value(v)}" for k, v in sorted((rnd.get("metrics") or {}).items()))
        r.print(f"round {rnd.get('round', 0) + 1}/{rnd.get('total_rounds')}  {metrics}".rstrip())
    if job.get("failure_details"):
        r.print(f"{'failure':<10} {_value(job['failure_details'])}")
    return OK


@command("abort_job", "ask the server to abort a job", arg("job", metavar="ID"))
def _abort_job(r: ScriptRunner, a: argparse.Namespace) -> int:
    job = r.session.abort_job(r.job(a.job))
    r.print(f"{_label(job)}: abort requested; status {job.get('status')}")
    return OK


@command("delete_job", "delete a finished job and its files on the server", arg("job", metavar="ID"))
def _delete_job(r: ScriptRunner, a: argparse.Namespace) -> int:
    job = r.session.delete_job(r.job(a.job))
    r.print(f"{_label(job)} deleted")
    return OK


@command("clone_job", "submit a job's folder again; prints the new job id", arg("job", metavar="ID"))
def _clone_job(r: ScriptRunner, a: argparse.Namespace) -> int:
    r.last = r.session.clone_job(r.job(a.job))
    r.print(r.last)
    return OK


@command("download_job", "fetch a job's server workspace into DEST/<job id>/; prints that folder",
         arg("job", metavar="ID"), arg("dest", metavar="DEST", nargs="?", default="."))
def _download_job(r: ScriptRunner, a: argparse.Namespace) -> int:
    r.print(str(r.session.download_job(r.job(a.job), a.dest)))
    return OK


@command("wait_job", "wait until a job ends; exit 0 if it COMPLETED, 4 otherwise",
         arg("job", metavar="ID"), arg("--timeout", metavar="S", type=float, help="give up after this many seconds"))
def _wait_job(r: ScriptRunner, a: argparse.Namespace) -> int:
    job = r.session.wait_for_job(r.job(a.job), timeout=a.timeout)
    r.print(_status_line(job))
    return OK if job.get("status") == "COMPLETED" else JOB_UNSUCCESSFUL


@command("sites", "the sites the server knows, with their status")
def _sites(r: ScriptRunner, a: argparse.Namespace) -> int:
    rows = [["SITE", "STATUS", "LAST SEEN", "QUEUED"]]
    rows += [[str(s.get("name")), str(s.get("status")), f"{s.get('heartbeat_age', 0):.1f} s ago",
              str(s.get("queued", 0))] for s in r.session.list_sites()]
    for line in _table(rows):
        r.print(line)
    return OK


@command("sys_info", "the server's version, workspace and counts")
def _sys_info(r: ScriptRunner, a: argparse.Namespace) -> int:
    info = r.session.system_info()
    width = max((len(k) for k in info), default=0)
    for key in sorted(info):
        r.print(f"{key:<{width}}  {_value(info[key])}")
    return OK


@command("tail_log", "the last lines of a job's server log, or of a site's log",
         arg("job", metavar="ID"), arg("site", metavar="SITE", nargs="?"),
         arg("-n", "--lines", metavar="N", type=int, default=50),
         arg("-f", "--follow", action="store_true", help="keep printing until the job ends"))
def _tail_log(r: ScriptRunner, a: argparse.Namespace) -> int:
    for line in r.session.tail_log(r.job(a.job), a.site, lines=a.lines, follow=a.follow):
        r.print(line)
    return OK


@command("help", "list the commands")
def _help(r: ScriptRunner, a: argparse.Namespace) -> int:
    for name in sorted(COMMANDS):
        usage = COMMANDS[name].parser.format_usage().strip().removeprefix("usage: ")
        r.print(f"{usage:<48} {COMMANDS[name].help}")
    return OK
