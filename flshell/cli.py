"""The `flshell` command: sub-commands for simulation (and, as they land, console, tui, poc...)."""

from __future__ import annotations

import argparse
import sys

from flshell.argtypes import positive_int as _positive_int
from runtime import paths

SIM_EPILOG = """\
examples:
  flshell sim examples/hello-numpy -n 8             8 sites, site-1..site-8
  flshell sim examples/hello-numpy -n 100 -t 4      100 sites, at most 4 working at once
  flshell sim my_job -c hospital-a,hospital-b        named sites
  flshell sim my_job/app -n 60                       a bare app folder runs on every site
  flshell sim examples/hello-pt -n 8 -t 2 --processes   8 sites in 2 worker processes
  flshell sim examples/hello-pt -n 8 -gpu 0,1        sites alternate between GPU 0 and 1
  flshell sim examples/hello-pt -n 8 -gpu [0,1],[2,3]   each worker sees a group of two GPUs

exit status: 0 completed, 1 job failed, 2 bad arguments or job folder, 3 aborted, 130 Ctrl-C
"""


def build_parser() -> argparse.ArgumentParser:
    from flshell.console_cmd import EPILOG

    parser = argparse.ArgumentParser(
        prog="flshell",
        description="flshell: a federated-learning runtime with an operator's shell. Without a "
                    "command it opens the admin console (or runs -c/-f/stdin commands).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from flshell import console_cmd

    console_cmd.add_arguments(parser)
    parser.add_argument("--version", action="version", version=f"flshell {console_cmd.version()}",
                        help="print flshell's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser(
        "sim",
        help="run a job folder on a simulated federation on this machine",
        description="Run a job folder on a server and N simulated sites in this process "
                    "(or, with --processes or -gpu, in worker processes).",
        epilog=SIM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("job_folder", help="job folder (meta.json + app folders) or a bare app folder")
    sim.add_argument("-w", "--workspace", help=f"workspace folder (default: {paths.default('simulation')}/<job name>)")
    who = sim.add_mutually_exclusive_group()
    who.add_argument("-n", "--n_clients", "--n-clients", dest="n_clients", type=_positive_int,
                     help="number of sites, named site-1..site-N")
    who.add_argument("-c", "--clients", help="comma-separated site names")
    sim.add_argument("-t", "--threads", type=_positive_int,
                     help="how many sites may execute a task at once (default: all); with "
                          "--processes, the number of worker processes (default: one per GPU "
                          "group, else min(sites, CPUs))")
    sim.add_argument("--processes", action="store_true",
                     help="run the sites in -t worker processes that reach the server over "
                          "gRPC on 127.0.0.1, instead of threads of this process")
    sim.add_argument("-gpu", "--gpu",
                     help="GPU ids, round-robin over sites (site i on group i mod G): 0,1 or "
                          "groups [0,1],[2,3]; each worker sees only its group "
                          "(CUDA_VISIBLE_DEVICES); implies --processes")
    sim.add_argument("-m", "--max_clients", "--max-clients", dest="max_clients", type=_positive_int,
                     default=100, help="refuse more sites than this (default: 100)")
    sim.add_argument("--rounds", type=_positive_int, help="override the workflow's num_rounds")
    sim.add_argument("--ready-timeout", type=float, default=60.0,
                     help="seconds to wait for sites to start the job; with worker processes, "
                          "also the longest wait with no new site connecting (default: 60)")
    sim.add_argument("--transport", choices=["inproc", "grpc"], default="inproc",
                     help="how sites reach the server: in-process calls (default) or gRPC on "
                          "127.0.0.1 (the transport a real federation uses)")
    sim.add_argument("--admin-port", type=int, default=0, metavar="PORT",
                     help="the admin port another flshell attaches to with --server to watch "
                          "the simulation (default 0: a free one; the address is printed)")
    sim.add_argument("--no-admin", dest="admin_port", action="store_const", const=None,
                     help="no admin port")
    sim.add_argument("--tui", action="store_true",
                     help="run with the terminal UI on top; it stays on the finished job until q")
    sim.add_argument("-q", "--quiet", action="store_true",
                     help="print only the summary (warnings still go to stderr)")
    from flshell import client_cmd, poc_cmd, provision_cmd, server_cmd, tui_cmd

    server_cmd.add_parser(sub)
    client_cmd.add_parser(sub)
    poc_cmd.add_parser(sub)
    provision_cmd.add_parser(sub)
    tui_cmd.add_parser(sub)
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
    if args.command == "tui":
        from flshell import tui_cmd

        return tui_cmd.run(args)
    if args.command == "provision":
        from flshell import provision_cmd

        return provision_cmd.run(args)
    from flshell import console_cmd

    return console_cmd.run(args)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
