"""`flshell` without a sub-command: the admin console, on a server, a POC or an embedded local
federation; interactive at a terminal, a script runner with -c, -f or piped stdin."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from flshell import exit_codes
from runtime import paths

EPILOG = """\
examples:
  flshell                                   console on an embedded local federation (2 sites)
  flshell --sites 4                         ... with 4 sites
  flshell --poc                             console on the POC in $FLSHELL_HOME/poc
  flshell --server 127.0.0.1:8003           console on any server's admin port
  flshell --startup prod/admin@org-a.com    as that admin (startup kit: mutual TLS, its server)
  flshell --poc -c "list_jobs; sites"       run commands and exit
  flshell --poc -f ops.flsh                 run a command file (# comments, one per line)
  cat ops.flsh | flshell --poc              the same from stdin
  flshell --format json -c "list_jobs"      one JSON document per command, for scripts

exit status: 0 ok, 1 a command failed, 2 usage error, 3 server unreachable,
             4 a job ended unsuccessfully under wait_job

leaving the embedded federation with jobs unfinished: the console asks (abort them, leave them
to go on the next time, or stay); a script leaves them (a warning on stderr), or aborts them
with -y; left jobs go on the next time flshell opens the same --local-workspace
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--server", metavar="HOST:PORT", help="attach to the admin port of a server")
    target.add_argument("--poc", nargs="?", const=str(paths.default("poc")), metavar="DIR",
                        help=f"attach to the POC in DIR (default {paths.default('poc')})")
    parser.add_argument("--startup", metavar="KIT",
                        help="attach as the admin of this startup kit (flshell provision): "
                             "mutual TLS to the server its fed_admin.json names (or --server)")
    parser.add_argument("-c", "--command", dest="commands", metavar="COMMANDS",
                        help='admin commands to run, separated by ";" or newlines')
    parser.add_argument("-f", "--file", dest="script_file", type=Path, metavar="FILE",
                        help="a command file to run")
    parser.add_argument("--keep-going", action="store_true",
                        help="in scripts, go on after a failing command")
    parser.add_argument("-y", "--yes", action="store_true",
                        help="answer yes to confirmations (abort_job, delete_job...); a script on "
                             "the embedded federation aborts the jobs unfinished when it ends")
    parser.add_argument("--format", choices=["table", "json"], default="table",
                        help="output: tables for people (default) or one JSON document per command")
    parser.add_argument("--no-pager", dest="pager", action="store_false",
                        help="the console prints long output whole instead of paging it "
                             "(`pager off` inside; scripts never page)")
    parser.add_argument("--sites", type=int, default=2, metavar="N",
                        help="sites of the embedded local federation (default 2)")
    parser.add_argument("--local-workspace", type=Path, metavar="DIR",
                        help="workspace of the embedded local federation "
                             f"(default {paths.default('local')})")
    parser.add_argument("--user", default="admin", help="who submits (until certificates name the admin)")


def version() -> str:
    """flshell's version, from the installed package's metadata."""
    from runtime.version import version as runtime_version

    return runtime_version()


def _embedded(args: argparse.Namespace) -> bool:
    """The console runs its own local federation (no --server, --poc or --startup)."""
    return not (args.server or args.poc is not None or getattr(args, "startup", None))


def _local_workspace(args: argparse.Namespace) -> Path:
    return Path(args.local_workspace or paths.default("local")).absolute()


def _address(args: argparse.Namespace) -> tuple[str | None, str]:
    """(address, description) of the server to attach to; (None, ...) for the embedded one."""
    if args.poc is not None:
        from runtime.federation.poc import PocError, admin_address

        try:
            return admin_address(args.poc), f"the POC in {args.poc}"
        except PocError as e:
            raise ConnectionError(str(e)) from None
    if getattr(args, "startup", None):
        if args.poc is not None:
            raise ValueError("--startup and --poc exclude each other (a secure POC's console "
                             "uses its admin kit already)")
        from provisioning import KitError, load_kit

        try:
            kit = load_kit(args.startup)
        except KitError as e:
            raise ValueError(str(e)) from None
        if kit.type != "admin":
            raise ValueError(f"--startup {args.startup}: a {kit.type} kit, not an admin's")
        where = args.server or str(kit.config.get("server"))
        return where, f"{where} as {kit.name} ({kit.role})"
    if args.server:
        return args.server, f"server {args.server}"
    return None, f"an embedded local federation with {args.sites} sites"


def open_session(args: argparse.Namespace, address: str):
    """The admin Session: as the admin of --startup KIT, or of a secure POC's admin kit (mutual
    TLS; who you are is the certificate's), else plain text as --user."""
    from runtime.admin import Session

    kit = getattr(args, "startup", None)
    if kit is None and getattr(args, "poc", None) is not None:
        from runtime.federation.poc import admin_kit

        kit = admin_kit(args.poc)  # None for an insecure POC
    if kit is not None:
        return Session.from_startup_kit(kit, address=address)
    return Session(address, user=args.user)


def run(args: argparse.Namespace) -> int:
    if args.sites < 1:
        print(f"error: --sites {args.sites}: need at least 1", file=sys.stderr)
        return exit_codes.USAGE
    script: str | None = None
    if args.commands is not None:
        script = args.commands
    elif args.script_file is not None:
        if not args.script_file.is_file():
            print(f"error: -f {args.script_file}: no such file", file=sys.stderr)
            return exit_codes.USAGE
    elif not sys.stdin.isatty():
        script = sys.stdin.read()
    with attached(args) as (session, address, what):
        if isinstance(session, int):
            return session  # could not attach: the exit code
        if script is not None or args.script_file is not None:
            from flshell.console.script import Runner

            runner = Runner(session, fmt=args.format, assume_yes=args.yes)
            if script is None:  # errors name the file and line: ops.flsh:3: ...
                code = runner.run_file(args.script_file, keep_going=args.keep_going)
            else:
                code = runner.run_script(script, keep_going=args.keep_going)
            if _embedded(args):
                _script_leaves(runner, args)
            return code
        from flshell.console.repl import run_repl

        def runner_factory(session, **kwargs):
            return Runner(session, out=sys.stdout, err=sys.stderr, pager=args.pager, **kwargs)

        from flshell.console.script import Runner

        return run_repl(session, address, description=what, runner_factory=runner_factory,
                        embedded=_local_workspace(args) if _embedded(args) else None)


def _script_leaves(runner, args: argparse.Namespace) -> None:
    """A script on the embedded federation ends with jobs unfinished: -y aborts them; otherwise
    they stay in the store to go on the next time, and stderr says so."""
    from flshell.console import leaving

    jobs = leaving.unfinished_jobs(runner.session)
    if not jobs:
        return
    if args.yes:
        runner.note(f"{leaving.count(jobs)}; aborting them (-y)")
        leaving.abort_all(runner.session, jobs, runner.note)
    else:
        runner.note(f"warning: {leaving.left_note(jobs, _local_workspace(args))}; -y aborts them instead")


@contextlib.contextmanager
def attached(args: argparse.Namespace):
    """(session, address, description) for the console and the TUI: --server, --poc, --startup,
    or an embedded local federation started here and stopped after. When attaching fails, the
    error is printed and `session` is the exit code instead."""
    try:
        address, what = _address(args)
    except ConnectionError as e:
        print(f"error: {e}", file=sys.stderr)
        yield exit_codes.CONNECTION, None, None
        return
    except ValueError as e:  # a startup kit that cannot be used (altered, not an admin's)
        print(f"error: {e}", file=sys.stderr)
        yield exit_codes.USAGE, None, None
        return
    local = None
    if address is None:
        from runtime.federation import LocalFederation

        local = LocalFederation(args.local_workspace, n_sites=args.sites)
        try:
            local.start()
        except OSError as e:
            print(f"error: the local federation could not start: {e}", file=sys.stderr)
            yield exit_codes.JOB_FAILED, None, None
            return
        address = local.admin_address
    try:
        with open_session(args, address) as session:
            yield session, address, what
    finally:
        if local is not None:
            local.stop()
