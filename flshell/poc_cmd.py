"""`flshell poc prepare|start|stop|status|clean`: a local federation in background processes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flshell import exit_codes

EPILOG = """\
examples:
  flshell poc prepare -n 2            server + site-1 + site-2 in $FLSHELL_HOME/poc (mutual TLS)
  flshell poc prepare -n 2 --insecure ... in plain text
  flshell poc start                   start them in the background; prints the admin address
  flshell --poc -c "submit_job examples/hello-numpy"
  flshell poc status
  flshell poc stop
  flshell poc clean                   stop and delete the POC workspace
"""


def add_parser(sub) -> argparse.ArgumentParser:
    from runtime.federation.poc import DEFAULT_DIR

    p = sub.add_parser("poc", help="a local federation (server + sites) in background processes",
                       description="Prepare, start and stop a proof-of-concept federation on "
                                   "this machine (127.0.0.1 only).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    act = p.add_subparsers(dest="poc_action", metavar="ACTION")

    def workspace(q: argparse.ArgumentParser) -> None:
        q.add_argument("-w", "--workspace", type=Path, default=DEFAULT_DIR,
                       help=f"POC workspace (default {DEFAULT_DIR})")

    q = act.add_parser("prepare", help="make the POC workspace: server + N sites")
    workspace(q)
    who = q.add_mutually_exclusive_group()
    who.add_argument("-n", "--n-sites", "--n_clients", dest="n_sites", type=int, default=2,
                     help="number of sites, site-1..site-N (default 2)")
    who.add_argument("-c", "--clients", help="comma-separated site names")
    q.add_argument("--force", action="store_true", help="replace an existing (stopped) POC")
    q.add_argument("--insecure", action="store_true",
                   help="plain-text gRPC, no certificates (default: a provisioned project in "
                        "DIR/prod, mutual TLS on both ports, the console as admin@poc)")
    q.add_argument("--heartbeat-interval", type=float, default=2.0, help="seconds (default 2)")
    q.add_argument("--lost-after", type=float, default=10.0,
                   help="silent seconds before a site is LOST (default 10)")
    for name, text in (("start", "start the server and sites in the background"),
                       ("stop", "stop what `start` started, and wait for it")):
        q = act.add_parser(name, help=text)
        workspace(q)
        q.add_argument("names", nargs="*", help="only these (server, site-1, ...); default all")
    q = act.add_parser("status", help="which POC processes run, and the sites the server sees")
    workspace(q)
    q = act.add_parser("clean", help="stop the POC and delete its workspace")
    workspace(q)
    p.set_defaults(poc_parser=p)
    return p


def run(args: argparse.Namespace) -> int:
    from runtime.federation import poc

    action = args.poc_action
    if action is None:
        args.poc_parser.print_help()
        return exit_codes.USAGE
    root = args.workspace
    t0 = time.monotonic()
    try:
        if action == "prepare":
            if args.n_sites < 1:
                raise poc.PocError(f"-n {args.n_sites}: need at least 1 site")
            sites = [s.strip() for s in args.clients.split(",")] if args.clients else None
            m = poc.prepare(root, args.n_sites, sites, force=args.force,
                            heartbeat_interval=args.heartbeat_interval, lost_after=args.lost_after,
                            secure=not args.insecure)
            print(f"POC prepared in {root.absolute()}: server + {', '.join(m['sites'])}")
            if m.get("secure"):
                print(f"mutual TLS: startup kits in {root.absolute() / poc.KITS_DIR}; the console "
                      f"attaches as {poc.ADMIN} ({m['admin_kit']})")
            else:
                print("insecure: plain-text gRPC, no authentication")
            print(f"start it with: flshell poc start -w {root}")
        elif action == "start":
            m = poc.start(root, args.names or None)
            print(f"POC started in {time.monotonic() - t0:.2f}s: admin {m['admin_address']}, "
                  f"sites connect to {m['fl_address']}")
            print(f'attach with: flshell --poc {root} -c "list_jobs"')
        elif action == "stop":
            stopped = poc.stop(root, args.names or None)
            print(f"stopped {', '.join(stopped) if stopped else 'nothing (not running)'} "
                  f"in {time.monotonic() - t0:.2f}s")
        elif action == "status":
            _print_status(poc.status(root))
        elif action == "clean":
            poc.clean(root)
            print(f"removed {root.absolute()}")
    except poc.PocError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.JOB_FAILED
    return exit_codes.OK


def _print_status(st: dict) -> None:
    mode = f"mutual TLS, admin kit {st['admin_kit']}" if st.get("secure") else "insecure"
    print(f"POC {st['workspace']}: admin {st['admin_address']} ({mode})")
    for m in st["members"]:
        state = f"running (pid {m['pid']})" if m["running"] else "stopped"
        print(f"  {m['name']:<16} {state}")
    if st.get("sites") is not None:
        print("sites the server sees:")
        for s in st["sites"] or []:
            print(f"  {s['name']:<16} {s['status']:<12} heartbeat {s['heartbeat_age']:.1f}s ago")
        if not st["sites"]:
            print("  (none)")
    elif st.get("server_error"):
        print(f"server: {st['server_error']}")
