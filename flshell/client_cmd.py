"""`flshell client`: run a site agent that connects to a server and runs each job in a process."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from pathlib import Path

from flshell import exit_codes

CLIENT_EPILOG = """\
examples:
  flshell client --startup prod/site-1                    (what the kit's startup/start.sh runs)
  flshell client -w /srv/site-1 -n site-1 -s 10.0.0.5:8002 --insecure

With --startup KIT (a site kit from `flshell provision`) the site connects with mutual TLS as
the kit's certificate: the kit is verified first (an altered kit is refused, naming the file),
the name and server address come from its startup/fed_client.json (--server overrides the
address), the workspace defaults to the kit folder, and local/site_policy.json applies
({"allow_custom_code": false}: jobs that bring code in custom/ are refused here).

GPUs: the site offers its jobs the GPUs NVML finds (none without nvidia-ml-py or a driver), or
those --gpus names (or the kit's local/resources.json {"gpus": "0,1"}): "0,1" (ids), "0:16,1:16"
(id:GiB) or "none". A job whose meta.json resource_spec asks this site for GPUs
({"site-1": {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 8}}, or "@ALL") runs with
CUDA_VISIBLE_DEVICES set to GPUs of its own, freed when its process ends.

The site registers, then runs until SIGTERM or Ctrl-C; each job runs in a process of its own and
logs to WORKSPACE/jobs/<job id>/log.txt (the agent to WORKSPACE/log.txt).

exit status: 0 stopped cleanly, 2 bad arguments
"""

_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RESERVED_NAMES = {"server", "@ALL"}


class UsageError(ValueError):
    """Arguments that cannot work; the message says which and what to pass instead."""


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-w", "--workspace",
                   help="the site's workspace folder (made if missing; default with --startup: "
                        "the kit folder)")
    p.add_argument("-n", "--name", help="the site's name, e.g. site-1 (with --startup: the kit's)")
    p.add_argument("-s", "--server", help="the server's site port, HOST:PORT (with --startup: "
                                          "default from the kit)")
    p.add_argument("--startup", metavar="KIT",
                   help="the site's startup kit (flshell provision): mutual TLS")
    p.add_argument("--insecure", action="store_true",
                   help="connect without TLS (on a trusted network only)")
    p.add_argument("--heartbeat-interval", type=float, metavar="S",
                   help="seconds between heartbeats (default: what the server asks for)")
    p.add_argument("--gpus", metavar="SPEC",
                   help='the GPUs jobs may use: "0,1", "0:16,1:16" (id:GiB) or "none" '
                        "(default: those NVML finds)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `client` to the `flshell` sub-commands."""
    p = subparsers.add_parser(
        "client", help="run a site: connect to a server and run the jobs it sends",
        description="Run a site agent: register with the server, run each job it is sent in a "
                    "process of its own, until stopped.",
        epilog=CLIENT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    return p


def parse_server(text: str) -> tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) -> (host, port); UsageError naming what is wrong."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", text.strip())
    if not m:
        raise UsageError(f"--server: expected HOST:PORT (e.g. 127.0.0.1:8002), got {text!r}")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 1 <= int(port) <= 65535:
        raise UsageError(f"--server: port must be 1..65535, got {port}")
    return host, int(port)


def load_site_kit(args: argparse.Namespace):
    """The verified site kit of --startup (UsageError naming the file when it is not usable);
    fills in args.name / args.server / args.workspace from it."""
    from provisioning import KitError, load_kit

    try:
        kit = load_kit(args.startup)
    except KitError as e:
        raise UsageError(str(e)) from None
    if kit.type != "client":
        raise UsageError(f"--startup {args.startup}: a {kit.type} kit ({kit.name}), not a site's")
    if args.name and args.name != kit.name:
        raise UsageError(f"--name {args.name}: the kit's certificate is {kit.name}'s; a site "
                         f"registers under its certificate's name")
    args.name = kit.name
    args.server = args.server or kit.config.get("server")
    args.workspace = args.workspace or str(kit.root)
    return kit


def site_policy(kit) -> dict:
    """The site's local/site_policy.json ({} when there is none); UsageError if unreadable."""
    path, data = _local_json(kit, "site_policy.json")
    if not isinstance(data, dict) or not isinstance(data.get("allow_custom_code", True), bool):
        raise UsageError(f'{path}: expected {{"allow_custom_code": true|false}}, got {data!r:.200}')
    return data


def _local_json(kit, name: str) -> tuple[Path, object]:
    """The kit's local/NAME as JSON ({} when there is none); UsageError if unreadable."""
    path = kit.local / name
    if not path.is_file():
        return path, {}
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not valid JSON ({e})") from None


def site_gpus(args: argparse.Namespace, kit=None):
    """The GPUs this site offers (--gpus, else the kit's local/resources.json "gpus"), or None
    to detect them with NVML; UsageError naming where a bad list came from."""
    from runtime.resources import GpuInventory, GpuSpecError

    spec, where = args.gpus, "--gpus"
    if spec is None and kit is not None:
        path, data = _local_json(kit, "resources.json")
        spec = data.get("gpus") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(spec, (str, type(None))):
            raise UsageError(f'{path}: expected {{"gpus": "0,1"}} (or "0:16,1:16", "none"), '
                             f"got {data!r:.100}")
        where = f"{path}: gpus"
    if spec is None:
        return None
    try:
        return GpuInventory.parse(spec)
    except GpuSpecError as e:
        raise UsageError(f"{where}: {e}") from None


def check_args(args: argparse.Namespace) -> tuple[str, Path]:
    """The server address and the workspace; UsageError for anything that cannot work."""
    if args.insecure and args.startup:
        raise UsageError("--insecure and --startup exclude each other")
    if not args.insecure and not args.startup:
        raise UsageError("pass --startup KIT (a site startup kit from `flshell provision`: mutual "
                         "TLS), or --insecure to connect without TLS (on a trusted network only)")
    if not args.startup:
        for opt in ("workspace", "name", "server"):
            if not getattr(args, opt):
                raise UsageError(f"--{opt} is required without --startup")
    if not _SITE_NAME.match(args.name or "") or args.name in RESERVED_NAMES:
        raise UsageError(f"--name: expected a site name of letters, digits, '.', '_' or '-' "
                         f"(not 'server'), got {args.name!r}")
    host, port = parse_server(args.server or "")
    if args.heartbeat_interval is not None and not args.heartbeat_interval > 0:
        raise UsageError(f"--heartbeat-interval: expected seconds > 0, got {args.heartbeat_interval:g}")
    ws = Path(args.workspace).expanduser()
    if ws.exists() and not ws.is_dir():
        raise UsageError(f"--workspace: {ws} is a file, expected a folder")
    try:
        ws.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--workspace: cannot make {ws}: {e.strerror}") from None
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return address, ws.resolve()


def run(args: argparse.Namespace) -> int:
    kit = None
    policy: dict = {}
    try:
        if args.startup and not args.insecure:
            kit = load_site_kit(args)
            policy = site_policy(kit)
        address, ws = check_args(args)
        gpus = site_gpus(args, kit)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_codes.USAGE
    from runtime.client.job_process import TlsFiles, open_transport
    from runtime.client.process_agent import ProcessSiteAgent
    from runtime.client.sitelog import LogSink

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sink = LogSink(interval=0.5)
    tls = TlsFiles(kit.ca_path, kit.cert_path, kit.key_path) if kit is not None else None
    transport = open_transport(address, tls=tls)  # job processes get the same files

    registered_once = threading.Event()

    def registered() -> None:
        registered_once.set()
        print(f"{args.name} registered with {address}; workspace {ws}", flush=True)

    def say_waiting() -> None:
        if not registered_once.wait(3.0) and not stop.is_set():
            print(f"{args.name}: server {address} not reachable yet; retrying "
                  f"(details in {ws / 'log.txt'})", file=sys.stderr, flush=True)

    agent = ProcessSiteAgent(args.name, transport, ws, sink, server_address=address, tls=tls,
                             heartbeat_interval=args.heartbeat_interval,
                             on_registered=registered,
                             allow_custom_code=bool(policy.get("allow_custom_code", True)),
                             gpus=gpus)
    restart: list[bool] = []

    def on_command(action: str) -> None:  # an admin's `shutdown client` / `restart client`
        restart.append(action == "restart")
        stop.set()

    agent.on_command = on_command
    agent.logger.info(f"{args.name} starting: server {address}, workspace {ws}, "
                      f"{agent.gpus.inventory.describe()} for jobs")
    agent.start(heartbeats=True)
    threading.Thread(target=say_waiting, daemon=True).start()
    try:
        while not stop.wait(0.1):
            pass
    finally:
        agent.stop(timeout=10)
        transport.close()
        sink.close()
    if restart and restart[0]:
        from flshell.server_cmd import reexec

        print(f"{args.name} restarting", flush=True)
        reexec([])
    return exit_codes.OK


def main(argv: list[str] | None = None) -> int:
    """`python -m flshell.client_cmd ARGS` is `flshell client ARGS`."""
    parser = argparse.ArgumentParser(prog="flshell client", epilog=CLIENT_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
