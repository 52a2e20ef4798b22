"""The `flshell` command: sub-commands for simulation (and, as they land, console, tui, poc...)."""

from __future__ import annotations

import argparse
import sys

from flshell import exit_codes

SIM_EPILOG = """\
examples:
  flshell sim examples/hello-numpy -n 8             8 sites, site-1..site-8
  flshell sim examples/hello-numpy -n 100 -t 4      100 sites, at most 4 working at once
  flshell sim my_job -c hospital-a,hospital-b        named sites
  flshell sim my_job/app -n 60                       a bare app folder runs on every site

exit status: 0 completed, 1 job failed, 2 bad arguments or job folder, 3 aborted, 130 Ctrl-C
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flshell",
        description="flshell: a federated-learning runtime with an operator's shell.",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--server", metavar="HOST:PORT", help="attach to the admin port of a server")
    target.add_argument("--poc", nargs="?", const="/tmp/flshell/poc", metavar="DIR",
                        help="attach to the POC in DIR (default /tmp/flshell/poc)")
    parser.add_argument("-c", "--command", dest="commands", metavar="COMMANDS",
                        help='admin commands to run, separated by ";" (e.g. "list_jobs; sites")')
    parser.add_argument("--user", default="admin", help="who submits (until certificates name the admin)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser(
        "sim",
        help="run a job folder on a simulated federation in this process",
        description="Run a job folder on a server and N simulated sites in this process.",
        epilog=SIM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("job_folder", help="job folder (meta.json + app folders) or a bare app folder")
    sim.add_argument("-w", "--workspace", help="workspace folder (default: /tmp/flshell/simulation/<job name>)")
    who = sim.add_mutually_exclusive_group()
    who.add_argument("-n", "--n_clients", "--n-clients", dest="n_clients", type=_positive_int,
                     help="number of sites, named site-1..site-N")
    who.add_argument("-c", "--clients", help="comma-separated site names")
    sim.add_argument("-t", "--threads", type=_positive_int,
                     help="how many sites may execute a task at once (default: all)")
    sim.add_argument("-gpu", "--gpu", help="GPU ids, round-robin over sites: 0,1 or groups [0,1],[2,3]")
    sim.add_argument("-m", "--max_clients", "--max-clients", dest="max_clients", type=_positive_int,
                     default=100, help="refuse more sites than this (default: 100)")
    sim.add_argument("--rounds", type=_positive_int, help="override the workflow's num_rounds")
    sim.add_argument("--ready-timeout", type=float, default=60.0,
                     help="seconds to wait for sites to start the job (default: 60)")
    sim.add_argument("--transport", choices=["inproc", "grpc"], default="inproc",
                     help="how sites reach the server: in-process calls (default) or gRPC on "
                          "127.0.0.1 (the transport a real federation uses)")
    sim.add_argument("--admin-port", type=int, metavar="PORT",
                     help="also serve the admin port (0 = a free one) so another flshell can "
                          "attach with --server and watch the simulation")
    sim.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    from flshell import client_cmd, poc_cmd, server_cmd

    server_cmd.add_parser(sub)
    client_cmd.add_parser(sub)
    poc_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sim":
        from flshell.sim_cmd import run_sim

        return run_sim(args)
    if args.command == "server":
        from flshell import server_cmd

        return server_cmd.run(args)
    if args.command == "client":
        from flshell import client_cmd

        return client_cmd.run(args)
    if args.command == "poc":
        from flshell import poc_cmd

        return poc_cmd.run(args)
    if args.commands is not None:
        return _run_commands(parser, args)
    parser.print_help()
    return exit_codes.OK


def _run_commands(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`flshell --server HOST:PORT -c "..."` / `flshell --poc [DIR] -c "..."`."""
    from flshell.commands import run_script
    from runtime.admin import Session

    if args.poc is not None:
        from flshell.poc import PocError, admin_address

        try:
            address = admin_address(args.poc)
        except PocError as e:
            print(f"error: {e}", file=sys.stderr)
            return exit_codes.CONNECTION
    elif args.server:
        address = args.server
    else:
        print("error: -c needs a server: --server HOST:PORT or --poc [DIR] "
              "(the embedded local federation arrives with the console)", file=sys.stderr)
        return exit_codes.USAGE
    with Session(address, user=args.user) as session:
        return run_script(session, args.commands)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
