"""The console's one command registry: name, arguments, help, completion hints, confirmation.

Help, the completer, scripts (`-c`, `-f`, stdin, `source`) and the TUI's actions all read
REGISTRY. A command is a plain function `fn(runner, args) -> exit code` that calls the
runner's Session and hands what it got to `runner.emit(doc, human)`: `doc` is the one JSON
document `set format json` prints, `human` the rich rendering (flshell.console.render).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from flshell.console import render, vertical
from flshell.console.live import Cancelled, follow_log, wait_for_job, watch_events
from flshell.exit_codes import JOB_UNSUCCESSFUL, OK
from flshell.argtypes import positive_int as _positive_int
from runtime import paths
from runtime.admin import AdminError

if TYPE_CHECKING:
    from flshell.console.script import Runner

JOB_STATUSES = ("SUBMITTED", "WAITING", "RUNNING", "COMPLETED", "FAILED", "ABORTED")


class UsageError(Exception):
    """A command line that cannot run as written (exit 2)."""


class CommandFailed(Exception):
    """A command that ran and failed for a reason the message gives (exit 1)."""


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
    parser: argparse.ArgumentParser  # raises UsageError instead of exiting
    fn: Callable[["Runner", argparse.Namespace], int]
    destructive: bool = False  # needs confirmation unless -y
    # arg dest -> "job" | "site" | "path" | "command" | "choices:a,b,c"
    completions: dict[str, str] = field(default_factory=dict)
    group: str = "jobs"  # the help section it is listed under
    supported: bool = True  # False: the server offers no call for it yet (fails with exit 1)
    question: Callable[["Runner", argparse.Namespace], str] | None = None  # the confirmation question


REGISTRY: dict[str, Command] = {}
GROUPS = ("jobs", "sites and server", "shell")


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, kwargs


def command(name: str, help: str, *args: tuple[tuple[str, ...], dict[str, Any]], group: str = "jobs",
            destructive: bool = False, completions: dict[str, str] | None = None, supported: bool = True,
            question: Callable[["Runner", argparse.Namespace], str] | None = None,
            aliases: tuple[str, ...] = ()) -> Callable:
    """Register a command: its name, one line of help, argparse arguments and the rest."""
    parser = _Parser(prog=name, description=help, add_help=False)
    for flags, kwargs in args:
        parser.add_argument(*flags, **kwargs)
    if destructive:
        parser.add_argument("-y", "--yes", action="store_true", help="do it without asking")

    def register(fn: Callable[["Runner", argparse.Namespace], int]) -> Callable:
        cmd = Command(name, help, parser, fn, destructive, dict(completions or {}), group, supported, question)
        for key in (name, *aliases):
            REGISTRY[key] = cmd
        return fn

    return register


def commands() -> list[Command]:
    """Every command once (aliases folded), in registration order."""
    seen: dict[int, Command] = {}
    for cmd in REGISTRY.values():
        seen.setdefault(id(cmd), cmd)
    return list(seen.values())


def _seconds(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text}")
    return n


def _status(text: str) -> str:
    if text.upper() not in JOB_STATUSES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(JOB_STATUSES)}, got {text!r}")
    return text.upper()


def _ask_about_job(verb: str, what: str = "") -> Callable[["Runner", argparse.Namespace], str]:
    def question(r: "Runner", a: argparse.Namespace) -> str:
        job = r.session.get_job(r.job(a.job))  # also: no question about a job that does not exist
        return f"{verb} {render.job_label(job)}, now {job.get('status')}{what}?"
    return question


JOB = {"job": "job"}

# ---- jobs ----------------------------------------------------------------------------------


@command("submit_job", "upload a job folder; prints the new job id (`last` names it afterwards)",
         arg("folder", metavar="FOLDER"), completions={"folder": "path"})
def _submit_job(r: "Runner", a: argparse.Namespace) -> int:
    r.last = r.session.submit_job(a.folder)
    r.emit({"job_id": r.last}, r.last)
    return OK


@command("list_jobs", "the server's jobs, newest first (all of them unless -m or --active)",
         arg("-a", "--all", action="store_true", help="every job, finished ones included (the default)"),
         arg("--active", action="store_true", help="only jobs that have not ended"),
         arg("-n", "--name", metavar="NAME", help="only jobs named NAME"),
         arg("-s", "--status", metavar="STATUS", type=_status, help="only jobs in STATUS"),
         arg("-m", "--max", dest="limit", metavar="N", type=_positive_int, help="only the newest N"),
         completions={"status": "choices:" + ",".join(JOB_STATUSES)})
def _list_jobs(r: "Runner", a: argparse.Namespace) -> int:
    if a.all and a.active:
        raise UsageError("-a (every job) and --active (unfinished jobs) contradict each other")
    jobs = r.session.list_jobs(name=a.name, status=a.status, limit=a.limit, include_done=not a.active)
    r.emit(jobs, lambda: render.jobs_table(jobs))
    return OK


@command("show_job", "a job's status, reason, rounds with their metrics, sites and failure details",
         arg("job", metavar="ID"), completions=JOB)
def _show_job(r: "Runner", a: argparse.Namespace) -> int:
    job = r.session.get_job(r.job(a.job))
    failing = render.failing_every_round(job.get("rounds") or [])
    if failing:
        _last_errors(r, job["job_id"], failing)
        job = {**job, "sites_failing_every_round": failing}
    r.emit(job, lambda: render.job_detail(job))
    return OK


SERVER_LOG_TAIL = 2000  # lines of a job's server log show_job reads for a failing site's last error


def _last_errors(r: "Runner", job_id: str, failing: list[dict[str, Any]]) -> None:
    """Fill in each failing site's last error from the job's server log, where the round
    records carry none: the workflow logs `task 'train' failed on site-3: <last line>`."""
    wanted = {f["site"]: f for f in failing if not f.get("error")}
    if not wanted:
        return
    try:
        lines = list(r.session.tail_log(job_id, None, lines=SERVER_LOG_TAIL))
    except AdminError:  # the log is a nicety: show_job works without it
        return
    for line in reversed(lines):
        for site, entry in wanted.items():
            if entry.get("error"):
                continue
            marker = f" failed on {site}: "
            if marker in line:
                entry["error"] = line.split(marker, 1)[1].strip()
            elif line.rstrip().endswith(f" timed out on {site}"):
                entry["error"] = "timed out"
        if all(e.get("error") for e in wanted.values()):
            return


@command("abort_job", "stop a job that has not ended", arg("job", metavar="ID"), destructive=True,
         completions=JOB, question=_ask_about_job("abort"))
def _abort_job(r: "Runner", a: argparse.Namespace) -> int:
    job = r.session.abort_job(r.job(a.job))
    r.emit(job, f"{render.job_label(job)}: abort requested; status {job.get('status')}")
    return OK


@command("delete_job", "delete an ended job and its files on the server", arg("job", metavar="ID"),
         destructive=True, completions=JOB, question=_ask_about_job("delete", ", with all its files on the server"))
def _delete_job(r: "Runner", a: argparse.Namespace) -> int:
    job = r.session.delete_job(r.job(a.job))
    r.emit(job, f"{render.job_label(job)} deleted")
    return OK


@command("clone_job", "submit a job's folder again as a new job; prints the new id (`last` names it)",
         arg("job", metavar="ID"), completions=JOB)
def _clone_job(r: "Runner", a: argparse.Namespace) -> int:
    ref = r.job(a.job)
    r.last = r.session.clone_job(ref)
    r.emit({"job_id": r.last, "cloned_from": ref}, r.last)
    return OK


@command("download_job", "fetch a job's server workspace (result, logs, metrics) into DEST/<job id>/ "
         "(default DEST: $FLSHELL_HOME/downloads)",
         arg("job", metavar="ID"), arg("dest", metavar="DEST", nargs="?", default=None),
         completions={"job": "job", "dest": "path"})
def _download_job(r: "Runner", a: argparse.Namespace) -> int:
    dest = Path(a.dest).expanduser() if a.dest else paths.ensure(paths.default("downloads"))
    folder = r.session.download_job(r.job(a.job), dest)
    r.emit({"job_id": folder.name, "path": str(folder)}, str(folder))
    return OK


@command("wait_job", "wait until a job ends: exit 0 if it COMPLETED, 4 if it FAILED or was ABORTED",
         arg("job", metavar="ID"), arg("--timeout", metavar="S", type=_seconds, help="give up after S seconds"),
         completions=JOB)
def _wait_job(r: "Runner", a: argparse.Namespace) -> int:
    job = wait_for_job(r, r.job(a.job), a.timeout)
    r.emit(job, render.status_line(job))
    return OK if job.get("status") == "COMPLETED" else JOB_UNSUCCESSFUL


@command("watch", "live events (rounds, site results, job and site status) until Ctrl-C; with ID, "
         "until that job ends", arg("job", metavar="ID", nargs="?"), completions=JOB)
def _watch(r: "Runner", a: argparse.Namespace) -> int:
    watch_events(r, r.job(a.job) if a.job is not None else None)
    return OK


@command("tail_log", "the last lines of a job's server log, or of SITE's log; -f keeps printing until "
         "the job ends (or Ctrl-C)", arg("job", metavar="ID"), arg("site", metavar="SITE", nargs="?"),
         arg("-n", "--lines", metavar="N", type=int, default=50, help="how many lines (default 50; -1: all)"),
         arg("-f", "--follow", action="store_true", help="then print lines as they are written"),
         completions={"job": "job", "site": "site"})
def _tail_log(r: "Runner", a: argparse.Namespace) -> int:
    ref = r.job(a.job)
    if not a.follow:
        lines = list(r.session.tail_log(ref, a.site, lines=a.lines))
        r.emit({"job": ref, "site": a.site, "lines": lines}, lambda: "\n".join(lines) if lines else None)
        return OK
    for line in follow_log(r, ref, a.site, a.lines):
        r.stream({"job": ref, "site": a.site, "line": line}, line)
    return OK


@command("show_stats", "a job's metrics per round, and a first/last/min/max summary",
         arg("job", metavar="ID"), completions=JOB)
def _show_stats(r: "Runner", a: argparse.Namespace) -> int:
    job = r.session.get_job(r.job(a.job))
    r.emit(render.stats_doc(job), lambda: render.stats(job))
    return OK


# ---- sites and server ----------------------------------------------------------------------

SITES = "sites and server"


def _pick_sites(r: "Runner", names: list[str] | None) -> list[dict[str, Any]]:
    sites = r.session.list_sites()
    if not names:
        return sites
    known = {s["name"]: s for s in sites}
    missing = [n for n in names if n not in known]
    if missing:
        raise CommandFailed(f"no site {', '.join(missing)} has registered with the server; "
                            f"`sites` lists the ones it knows ({', '.join(known) or 'none yet'})")
    return [known[n] for n in names]


@command("sites", "the sites the server knows: status, heartbeat age, running jobs, CPU and memory",
         group=SITES)
def _sites(r: "Runner", a: argparse.Namespace) -> int:
    sites = r.session.list_sites()
    r.emit(sites, lambda: render.sites_table(sites))
    return OK


@command("check_status", "`server`: is it up, what runs, how many sites; `client [SITES]`: the sites",
         arg("target", metavar="server|client", choices=["server", "client"]),
         arg("sites", metavar="SITE", nargs="*"), group=SITES,
         completions={"target": "choices:server,client", "sites": "site"})
def _check_status(r: "Runner", a: argparse.Namespace) -> int:
    if a.target == "server":
        if a.sites:
            raise UsageError("check_status server takes no site names; use check_status client SITE...")
        info = r.session.system_info()
        r.emit(info, lambda: render.server_status(info))
        return OK
    sites = _pick_sites(r, a.sites)
    r.emit(sites, lambda: render.sites_table(sites))
    return OK


@command("gpu", "per-GPU utilisation (with its recent history), memory, temperature, power and the "
         "jobs on it, per site", arg("site", metavar="SITE", nargs="?"), group=SITES,
         completions={"site": "site"})
def _gpu(r: "Runner", a: argparse.Namespace) -> int:
    sites = _pick_sites(r, [a.site] if a.site else None)
    history = r.session.gpu_history(a.site) if any((s.get("info") or {}).get("gpus") for s in sites) else {}
    rows = render.gpu_rows(sites, history)
    r.emit(rows, lambda: render.gpu_table(rows))
    return OK


@command("sys_info", "the server's host, workspace, addresses and load; with SITE, what that site reported",
         arg("site", metavar="SITE", nargs="?"), group=SITES, completions={"site": "site"})
def _sys_info(r: "Runner", a: argparse.Namespace) -> int:
    info = _pick_sites(r, [a.site])[0] if a.site else r.session.system_info()
    r.emit(info, lambda: render.kv_table(info))
    return OK


def _operate(action: str) -> Callable[["Runner", argparse.Namespace], int]:
    def fn(r: "Runner", a: argparse.Namespace) -> int:
        target = getattr(a, "target", "client")
        sites = list(getattr(a, "sites", None) or ([a.site] if getattr(a, "site", None) else []))
        if target == "server" and sites:
            raise UsageError(f"{action} server takes no site names")
        reply = r.session.operate(action, target, sites)
        r.emit(reply, reply.get("message"))
        return OK
    return fn


def _ask_operate(action: str) -> Callable[["Runner", argparse.Namespace], str]:
    def ask(r: "Runner", a: argparse.Namespace) -> str:
        if getattr(a, "target", None) == "server":
            return f"{action} the server?"
        who = ", ".join(getattr(a, "sites", None) or []) or "every connected site"
        return f"{action} {who}?"
    return ask


command("shutdown", "stop the server, or sites (all connected ones unless named)",
        arg("target", metavar="server|client", choices=["server", "client"]),
        arg("sites", metavar="SITE", nargs="*"), group=SITES, destructive=True,
        question=_ask_operate("shut down"),
        completions={"target": "choices:server,client", "sites": "site"})(_operate("shutdown"))
command("restart", "restart the server (running jobs resume after their last round) or sites",
        arg("target", metavar="server|client", choices=["server", "client"]),
        arg("sites", metavar="SITE", nargs="*"), group=SITES, destructive=True,
        question=_ask_operate("restart"),
        completions={"target": "choices:server,client", "sites": "site"})(_operate("restart"))
command("remove_client", "make the server forget a site (its tasks fail; it may register again)",
        arg("site", metavar="SITE"), group=SITES, destructive=True,
        question=lambda r, a: f"remove {a.site} from the server?",
        completions={"site": "site"})(_operate("remove_client"))


# ---- shell ---------------------------------------------------------------------------------

SHELL = "shell"


@command("help", "the commands, or one command's usage", arg("command", metavar="COMMAND", nargs="?"),
         group=SHELL, completions={"command": "command"})
def _help(r: "Runner", a: argparse.Namespace) -> int:
    if a.command is not None:
        cmd = REGISTRY.get(a.command)
        if cmd is None:
            raise UsageError(unknown_command(a.command))
        r.emit(_command_doc(cmd), render.command_help(cmd))
        return OK
    groups = [(g, [c for c in commands() if c.group == g]) for g in GROUPS]
    r.emit([_command_doc(c) for c in commands()], lambda: render.help_table(groups))
    return OK


def _command_doc(cmd: Command) -> dict[str, Any]:
    aliases = sorted(k for k, c in REGISTRY.items() if c is cmd and k != cmd.name)
    return {"name": cmd.name, "usage": render.usage(cmd), "help": cmd.help, "group": cmd.group,
            "destructive": cmd.destructive, "supported": cmd.supported, "aliases": aliases}


def unknown_command(name: str) -> str:
    import difflib

    names = sorted(REGISTRY)
    close = [n for n in names if n.startswith(name)] if name else []
    close = close or difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close[:2])}?" if close else "; `help` lists the commands"
    return f"unknown command {name!r}{hint}"


@command("set", "change a setting: `set format json` prints one JSON document per command, "
         "`set format table` tables for people", arg("setting", metavar="format", choices=["format"]),
         arg("value", metavar="table|json", choices=["table", "json"]), group=SHELL,
         completions={"setting": "choices:format", "value": "choices:table,json"})
def _set(r: "Runner", a: argparse.Namespace) -> int:
    r.fmt = a.value
    r.emit({a.setting: a.value}, None)
    return OK


def _on_off(current: bool, value: str | None) -> bool:
    return not current if value is None else value == "on"


@command("pager", "page output taller than the terminal ($FLSHELL_PAGER, $PAGER or less; never in "
         "scripts or pipes); without on|off, toggle", arg("value", metavar="on|off", nargs="?",
                                                         choices=["on", "off"]),
         group=SHELL, completions={"value": "choices:on,off"})
def _pager(r: "Runner", a: argparse.Namespace) -> int:
    r.pager = _on_off(r.pager, a.value)
    state = "on" if r.pager else "off"
    r.emit({"pager": state}, f"pager {state}: output taller than the terminal is "
                             + ("paged" if r.pager else "printed whole"))
    return OK


@command("expanded", "vertical output: each table row as one field per line (psql's \\x); "
         "auto: only tables wider than the screen (80 columns off a terminal); without a "
         "value, toggle on|off", arg("value", metavar="on|off|auto", nargs="?", choices=list(vertical.EXPANDED_MODES)),
         group=SHELL, completions={"value": "choices:on,off,auto"}, aliases=("x",))
def _expanded(r: "Runner", a: argparse.Namespace) -> int:
    r.expanded = a.value or ("off" if r.expanded == "on" else "on")
    r.emit({"expanded": r.expanded}, f"expanded display {r.expanded}")
    return OK


@command("clear", "clear the screen", group=SHELL)
def _clear(r: "Runner", a: argparse.Namespace) -> int:
    if r.clear_screen is not None:
        r.clear_screen()
    elif render.is_terminal(r.out):
        r.out.write("\x1b[H\x1b[2J\x1b[3J")  # home, erase the screen and its scrollback
        r.out.flush()
    return OK


@command("version", "flshell's version", group=SHELL)
def _version(r: "Runner", a: argparse.Namespace) -> int:
    from flshell.console_cmd import version

    r.emit({"flshell": version()}, f"flshell {version()}")
    return OK


@command("source", "run the commands in FILE (`#` comments; stops at the first failure)",
         arg("file", metavar="FILE"), group=SHELL, completions={"file": "path"})
def _source(r: "Runner", a: argparse.Namespace) -> int:
    return r.source(Path(a.file))


@command("exit", "leave the console (a script stops here)", group=SHELL, aliases=("bye", "quit"))
def _exit(r: "Runner", a: argparse.Namespace) -> int:
    r.exit_requested = True
    return OK


__all__ = ["Cancelled", "Command", "CommandFailed", "GROUPS", "REGISTRY", "UsageError", "commands",
           "unknown_command"]
