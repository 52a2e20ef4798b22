"""`flshell server`: the federation's server process (site port + admin port)."""

from __future__ import annotations

import argparse
import json
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

With --startup KIT (a server kit from `flshell provision`) both ports run mutual TLS: the kit is
verified first (an altered kit is refused, naming the file), host and ports come from its
startup/fed_server.json, settings from local/resources.json, the admin authorization policy from
local/authorization.json; the workspace defaults to the kit folder. Every admin command and job
state change is written to WORKSPACE/audit.log.

examples:
  flshell server --startup prod/fl.example.com          (what the kit's startup/start.sh runs)
  flshell server --workspace /srv/fl --insecure --host 0.0.0.0 --fl-port 8002 --admin-port 8003
"""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("server", help="run a federation server (site port + admin port)",
                       description="Run a federation server: sites connect to its FL port, "
                                   "admins (flshell, the TUI, recipes) to its admin port.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-w", "--workspace",
                   help="server workspace folder (default with --startup: the kit folder)")
    p.add_argument("--startup", metavar="KIT",
                   help="the server's startup kit (flshell provision): mutual TLS and the policy")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--fl-port", type=int, help="port for sites (default 0: a free one)")
    p.add_argument("--admin-port", type=int, help="port for admins (default 0: a free one)")
    p.add_argument("--max-jobs", type=int, help="jobs run at once (default 2)")
    p.add_argument("--heartbeat-interval", type=float, help="seconds between site heartbeats (default 5)")
    p.add_argument("--lost-after", type=float, help="silent seconds before a site is LOST (default 10 heartbeats)")
    p.add_argument("--insecure", action="store_true",
                   help="plain-text gRPC, no authentication or authorization (trusted networks only)")
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


def load_startup(kit_dir: str) -> tuple[object, dict, object]:
    """(kit, ServerConfig values from the kit, policy) for `--startup KIT`; ValueError saying
    which file is wrong (provisioning.KitError / PolicyError are ValueErrors or named here)."""
    from dataclasses import fields

    from provisioning import KitError, load_kit
    from provisioning.policy import Policy, PolicyError, load_policy
    from runtime.federation.process import ServerConfig

    try:
        kit = load_kit(kit_dir)
    except KitError as e:
        raise ValueError(str(e)) from None
    if kit.type != "server":
        raise ValueError(f"{kit_dir}: a {kit.type} kit ({kit.name}), not the server's")
    values: dict = {k: kit.config[k] for k in ("host", "fl_port", "admin_port") if k in kit.config}
    resources = kit.local / "resources.json"
    if resources.is_file():
        try:
            data = json.loads(resources.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{resources}: not valid JSON ({e})") from None
        known = {f.name for f in fields(ServerConfig)} - {"workspace", "insecure"}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"{resources}: expected an object with keys among "
                             f"{', '.join(sorted(known))}; got {data!r:.200}")
        values.update(data)
    auth = kit.local / "authorization.json"
    try:
        policy = load_policy(auth) if auth.is_file() else Policy.default()
    except PolicyError as e:
        raise ValueError(str(e)) from None
    return kit, values, policy


def run(args: argparse.Namespace) -> int:
    from runtime.federation.process import ServerConfig, ServerProcess

    if args.insecure and args.startup:
        print("error: --insecure and --startup exclude each other", file=sys.stderr)
        return exit_codes.USAGE
    if not args.insecure and not args.startup:
        print("error: pass --startup KIT (a server startup kit from `flshell provision`: mutual "
              "TLS), or --insecure for plain text on a trusted network", file=sys.stderr)
        return exit_codes.USAGE
    kit = policy = None
    values: dict = {}
    if args.startup:
        try:
            kit, values, policy = load_startup(args.startup)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return exit_codes.USAGE
    workspace = args.workspace or (str(kit.root) if kit is not None else None)
    if workspace is None:
        print("error: --workspace is required without --startup", file=sys.stderr)
        return exit_codes.USAGE
    cli = {"host": args.host, "fl_port": args.fl_port, "admin_port": args.admin_port,
           "max_jobs": args.max_jobs, "heartbeat_interval": args.heartbeat_interval,
           "lost_after": args.lost_after}
    try:
        cfg = ServerConfig.load(workspace, **{**values, **{k: v for k, v in cli.items() if v is not None}},
                                insecure=kit is None)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.USAGE
    setup_logging(Path(cfg.workspace) / "log.txt")
    server = ServerProcess(cfg, kit=kit, policy=policy, tap_core_log=True)
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

    def on_command(action: str) -> None:  # an admin's `shutdown server` / `restart server`
        how.append(action)
        stop.set()

    server.manager.on_server_command = on_command
    mode = f"mutual TLS as {kit.name}" if kit is not None else "insecure"
    print(f"flshell server ready ({mode}): sites -> {server.fl_address}, admin -> "
          f"{server.admin_address}", flush=True)
    logging.getLogger("flshell.server").info(
        f"ready: fl {server.fl_address}, admin {server.admin_address}, workspace {server.workspace}")
    while not stop.wait(0.1):
        pass
    logging.getLogger("flshell.server").info(f"{how[0] if how else 'stop'}: draining")
    server.drain()
    if how and how[0] == "restart":
        print("flshell server restarting", flush=True)
        reexec(["--fl-port", server.fl_address.rsplit(":", 1)[1],
                "--admin-port", server.admin_address.rsplit(":", 1)[1]])
    print("flshell server stopped", flush=True)
    return exit_codes.OK


def reexec(extra: list[str]) -> None:
    """Replace this process with the command that started it (plus `extra` options, which
    win): same pid, so POC bookkeeping and supervisors still see it."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:], *extra])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flshell")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return run(parser.parse_args(["server", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
