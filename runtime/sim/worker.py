"""A simulator worker process: `python -m runtime.sim.worker ...` (started by the simulator).

It hosts some of the simulated sites and runs them exactly as the in-process simulator does
(`SiteAgent`s fed by one `SitePump`), but reaches the simulator's embedded server over gRPC on
loopback. A worker hosting several sites runs one site's task at a time: the sites take turns
in it ("swapped in"), while their Client API scripts wait for their next task.

The simulator sets `CUDA_VISIBLE_DEVICES` to the worker's GPU group, so `cuda:0` in a script is
the first GPU of that group. A worker's working folder is the simulation's workspace (files a
script writes to a relative path land there, not in the user's folder). Registration retries with capped backoff and no deadline: on a
loaded host a slow worker connects late, not never (the simulator watches the process itself).
A control socket from the simulator (`--control-fd`) ends the worker, and everything it
started, the moment the simulator is gone: a worker never outlives it. SIGTERM ends it
gracefully: its sites finish their job's end (scripts return), flush their logs and say
goodbye; SIGINT does the same without waiting for scripts (an aborted or failed job).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtime.client.agent import SiteAgent, SitePump
from runtime.client.apps import DownloadedApps, SharedApps
from runtime.client.backoff import Backoff
from runtime.client.job_process import control_socket
from runtime.client.sitelog import LogSink
from runtime.transport.base import TransportError
from runtime.transport.grpc_client import GrpcSiteTransport


def _watch_parent(control) -> None:
    """EOF on the control socket: the simulator is gone; so is this worker, with its group."""
    try:
        while control.recv(64):
            pass
    except OSError:
        pass
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(128 + signal.SIGKILL)


def _register(agent: SiteAgent, stop: threading.Event) -> bool:
    backoff = Backoff(base=0.1, cap=5.0)
    while not stop.is_set():
        try:
            agent.register()
            return True
        except TransportError as e:
            delay = backoff.delay()
            agent.logger.warning(f"{agent.name}: server not reachable yet ({e}); "
                                 f"retrying in {delay:.1f}s")
            stop.wait(delay)
    return False


def gpu_indices(group: str | None) -> set[int] | None:
    """The physical GPU ids of a group ("2,3" -> {2, 3}); None: no group, report every GPU."""
    if not group:
        return None
    return {int(g) for g in group.split(",") if g.strip().isdigit()}


def _heartbeats(agents: list[SiteAgent], transport: GrpcSiteTransport, group: str | None,
                stop: threading.Event) -> None:
    """Every heartbeat interval, for each site: its jobs, this worker's pid and host, and the
    load of the GPUs of this worker's group (NVML numbers GPUs by PCI bus, as the simulator
    sets CUDA_DEVICE_ORDER; a host without NVML reports none)."""
    from runtime.monitor import load_report

    mine = gpu_indices(group)
    interval = agents[0].heartbeat_interval if agents else 5.0
    while not stop.wait(interval):
        jobs = sorted({j for a in agents for j in a.jobs})
        report = load_report({jobs[0]: os.getpid()} if jobs else {})
        report["gpus"] = [g for g in report["gpus"] if mine is None or g.get("index") in mine]
        if mine is not None and not report["gpus"] and report.get("gpu_note") is None:
            report["gpu_note"] = f"no GPU {group} on this host"
        for agent in agents:
            info: dict[str, Any] = {"jobs": sorted(agent.jobs), "worker_pid": os.getpid(),
                                    **report}
            try:
                transport.heartbeat(agent.name, info)
            except TransportError:
                pass  # the server is going away, or busy: the next beat tries again


def run(args: argparse.Namespace) -> int:
    control = control_socket(args.control_fd)
    if control is not None:
        threading.Thread(target=_watch_parent, args=(control,), name="parent-watch",
                         daemon=True).start()
    stop = threading.Event()
    grace = [args.end_grace]

    def quick(*_: Any) -> None:  # the job was aborted or failed: scripts may be mid-task
        grace[0] = min(grace[0], 0.5)
        stop.set()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, quick)  # (Ctrl-C at a terminal never reaches this session)
    infos: dict[str, dict[str, Any]] = json.loads(args.info) if args.info else {}
    sites = [s for s in args.sites.split(",") if s]
    workspace = Path(args.workspace)
    for site in sites:  # a site that cannot have its folder cannot start: say so, exit 1
        try:
            (workspace / site).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"{site}: its workspace {workspace / site} cannot be made: {e}",
                  file=sys.stderr, flush=True)
            return 1
    transport = GrpcSiteTransport(args.server)
    sink = LogSink()
    gate = threading.Semaphore(1) if len(sites) > 1 else None  # the sites take turns here
    shared = SharedApps()  # the sites of this worker download each job, unpack it once
    agents = [SiteAgent(site, transport, DownloadedApps(transport, site, workspace / site,
                                                        shared=shared),
                        workspace / site, sink, gate, infos.get(site, {})) for site in sites]
    for agent in agents:
        if not _register(agent, stop):
            return 0
    pump = SitePump(transport, agents)
    pump.start(register=False)
    threading.Thread(target=_heartbeats, args=(agents, transport, args.gpu, stop),
                     name="heartbeats", daemon=True).start()
    stop.wait()
    # the job's end: let the sites' scripts return and their logs flush, then leave
    deadline = time.monotonic() + grace[0]
    while any(a.busy for a in agents) and time.monotonic() < deadline:
        time.sleep(0.05)
    pump.request_stop()
    for agent in agents:
        agent.stop(timeout=max(0.5, deadline - time.monotonic()))
    sink.close()
    transport.close()  # ends the pump's long poll now, not at its timeout
    pump.stop(timeout=2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.sim.worker",
                                description="Host simulated sites in a worker process "
                                            "(started by the simulator).")
    p.add_argument("--server", required=True, help="the simulator's site port, HOST:PORT")
    p.add_argument("--workspace", required=True, help="the simulation's workspace")
    p.add_argument("--sites", required=True, help="comma-separated names of the sites hosted here")
    p.add_argument("--info", help="JSON: site -> the info its scripts see (system_info)")
    p.add_argument("--gpu", help="this worker's GPU group, e.g. 0 or 2,3")
    p.add_argument("--end-grace", type=float, default=10.0,
                   help="seconds the sites get to end their job after SIGTERM")
    p.add_argument("--control-fd", type=int, help="socket to the simulator (inherited)")
    return p


def main(argv: list[str] | None = None) -> int:
    faulthandler.enable(all_threads=False)  # a crash leaves its stack on stderr for the simulator
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
