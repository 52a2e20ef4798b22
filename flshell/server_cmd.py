"""`flshell server`: the federation's server process (site port + admin port)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from flshell import exit_codes

EPILOG = """\
The workspace keeps the job store (jobs.db + one folder per job); a server restarted on the
same workspace resumes running jobs after their last completed round. Settings come from
WORKSPACE/config.json when present (written by `flshell poc prepare`), then these options.
The real addresses are printed and written to WORKSPACE/server.json.

SIGTERM drains: health turns NOT_SERVING, no new job starts, running jobs resume on restart.

example (listening on every interface, so sites on other hosts can connect):
  flshell server --workspace /srv/fl --insecure --host 0.0.0.0 --fl-port 8002 --admin-port 8003
"""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("server", help="run a federation server (site port + admin port)",
                       description="Run a federation server: sites connect to its FL port, "
                                   "admins (flshell, the TUI, recipes) to its admin port.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-w", "--workspace", required=True, help="server workspace folder")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--fl-port", type=int, help="port for sites (default 0: a free one)")
    p.add_argument("--admin-port", type=int, help="port for admins (default 0: a free one)")
    p.add_argument("--max-jobs", type=int, help="jobs run at once (default 2)")
    p.add_argument("--heartbeat-interval", type=float, help="seconds between site heartbeats (default 5)")
    p.add_argument("--lost-after", type=float, help="silent seconds before a site is LOST (default 10 heartbeats)")
    p.add_argument("--insecure", action="store_true",
                   help="plain-text gRPC (required until mutual TLS lands with `flshell provision`)")
    return p


def setup_logging(log_file: Path, quiet: bool = False) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if not quiet:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        console.setLevel(logging.WARNING)
        root.addHandler(console)


def run(args: argparse.Namespace) -> int:
    from runtime.server.process import ServerConfig, ServerProcess

    if not args.insecure:
        print("error: --insecure is required for now: mutual TLS arrives with `flshell provision`",
              file=sys.stderr)
        return exit_codes.USAGE
    try:
        cfg = ServerConfig.load(args.workspace, host=args.host, fl_port=args.fl_port,
                                admin_port=args.admin_port, max_jobs=args.max_jobs,
                                heartbeat_interval=args.heartbeat_interval,
                                lost_after=args.lost_after)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.USAGE
    setup_logging(Path(cfg.workspace) / "log.txt")
    server = ServerProcess(cfg)
    try:
        server.start()
    except (OSError, RuntimeError) as e:
        print(f"error: the server could not start: {e}", file=sys.stderr)
        return exit_codes.JOB_FAILED
    stop = threading.Event()
    how: list[str] = []

    def on_signal(signum, _frame) -> None:
        how.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"flshell server ready: sites -> {server.fl_address}, admin -> {server.admin_address}",
          flush=True)
    logging.getLogger("flshell.server").info(
        f"ready: fl {server.fl_address}, admin {server.admin_address}, workspace {server.workspace}")
    while not stop.wait(0.1):
        pass
    logging.getLogger("flshell.server").info(f"{how[0] if how else 'stop'}: draining")
    server.drain()
    print("flshell server stopped", flush=True)
    return exit_codes.OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flshell")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return run(parser.parse_args(["server", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
