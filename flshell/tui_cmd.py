"""`flshell tui`: the terminal UI on a server, a POC, a running `flshell sim`, or an embedded
local federation (the default, like the console)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flshell import exit_codes
from runtime import paths

EPILOG = """\
examples:
  flshell tui                               on an embedded local federation (2 sites)
  flshell tui --sites 4                     ... with 4 sites
  flshell tui --poc                         on the POC in $FLSHELL_HOME/poc
  flshell tui --server 127.0.0.1:8003       on any server's admin port (or a running `flshell sim`)
  flshell tui --server HOST:PORT --readonly no submit, abort or clone keys
  flshell tui --startup prod/admin@org-a.com as that admin (startup kit: mutual TLS, its server)

keys: Enter open a job (or a site: its heartbeats, host load, jobs, GPUs), s submit, a abort,
      c clone, d download, l logs, / filter, ? the keys of each screen, q or Ctrl-C quit

exit status: 0 ok, 2 usage error (or an unusable startup kit), 3 the server could not be reached
             at start
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--server", metavar="HOST:PORT", help="attach to the admin port of a server")
    target.add_argument("--poc", nargs="?", const=str(paths.default("poc")), metavar="DIR",
                        help=f"attach to the POC in DIR (default {paths.default('poc')})")
    parser.add_argument("--startup", metavar="KIT",
                        help="attach as the admin of this startup kit (flshell provision): mutual TLS")
    parser.add_argument("--sites", type=int, default=2, metavar="N",
                        help="sites of the embedded local federation (default 2)")
    parser.add_argument("--local-workspace", type=Path, metavar="DIR",
                        help="workspace of the embedded local federation "
                             f"(default {paths.default('local')})")
    parser.add_argument("--readonly", action="store_true",
                        help="hide the keys that change the server (submit, abort, clone)")
    parser.add_argument("--refresh", type=float, default=5.0, metavar="S",
                        help="seconds between light reloads of jobs and sites (default 5, at least 1); "
                             "events update the screen as they come")
    parser.add_argument("--user", default="admin", help="who submits (until certificates name the admin)")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("tui", help="a live terminal UI: jobs, site heartbeats, GPU load, logs",
                       description="A live terminal UI over a server's admin port: jobs and their rounds, "
                                   "sites and their heartbeats, per-GPU load, logs; submit, abort, "
                                   "clone and download jobs.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def attach(address: str, *, readonly: bool = False, refresh: float = 5.0, user: str = "admin") -> int:
    """Run the TUI on the (plain-text) admin port at `address` until the user quits, e.g. over a
    running `flshell sim`."""
    from runtime.admin import Session

    with Session(address, user=user) as session:
        return run_on(session, readonly=readonly, refresh=refresh)


def run_on(session, *, readonly: bool = False, refresh: float = 5.0) -> int:
    """Run the TUI on an open admin Session until the user quits."""
    from runtime.admin import ServerUnreachable

    from flshell.tui import SessionSource, make_app

    try:
        session.list_sites()  # fail now, plainly, rather than open on a "disconnected" screen
    except ServerUnreachable as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.CONNECTION
    app = make_app(SessionSource(session), readonly=readonly, refresh=refresh)
    app.run()
    return app.return_code or exit_codes.OK


def run(args: argparse.Namespace) -> int:
    # where to attach and as whom: the console's rules (--server, --poc, --startup, embedded)
    from flshell.console_cmd import attached

    if args.sites < 1:
        print(f"error: --sites {args.sites}: need at least 1", file=sys.stderr)
        return exit_codes.USAGE
    with attached(args) as (session, _address, _what):
        if isinstance(session, int):
            return session
        return run_on(session, readonly=args.readonly, refresh=args.refresh)


def main(argv: list[str] | None = None) -> int:
    """`python -c "from flshell.tui_cmd import main; main([...])"` until `flshell tui` is wired."""
    parser = argparse.ArgumentParser(prog="flshell tui", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
