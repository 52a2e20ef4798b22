"""Big models through a POC federation: wall time, MB/s each way, peak RSS of server and sites.

    python tests/benchmarks/transfer.py                 # 1 GiB and 2.5 GiB float32 models
    python tests/benchmarks/transfer.py --sizes-mib 256 # a quick look

For each size: `flshell poc prepare -n 2` + `start` (a server process, two site agents, each job
in its own child process, gRPC on 127.0.0.1), submit a 2-round FedAvg job whose model is one
float32 array of that size, wait for it, then read:

- server -> site: from the server's `round_started` event to the moment the site's script holds
  the model (the script logs the time); site -> server: from the script calling `send` to the
  server's `task_result` event. Both include encoding and decoding. MB/s = model bytes / seconds,
  per site (the two sites transfer at the same time, so the total is twice that).
- peak RSS (VmHWM) of the server process, and of each site's job process (it logs its own
  ru_maxrss) and agent process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MiB = 1024 * 1024

PERSISTOR = '''
import numpy as np
from runtime.model import FLModel, ParamsType

class BigModel:
    def __init__(self, mib: float):
        self.n = int(mib * 1024 * 1024) // 4
    def load_model(self):
        return FLModel(params={"w": np.ones(self.n, dtype=np.float32)}, params_type=ParamsType.FULL)
'''

CLIENT = '''
import resource, time
import runtime.client as flare

flare.init()
site = flare.get_site_name()
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    print(f"RECV {site} round={model.current_round} t={time.time():.6f}", flush=True)
    w = model.params["w"]
    w += 1.0  # in place: the site's own copy
    print(f"SEND {site} round={model.current_round} t={time.time():.6f}", flush=True)
    flare.send(flare.FLModel(params={"w": w}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
    del model, w
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"PEAK_RSS_MIB {site} {rss:.0f}", flush=True)
'''


def make_job(root: Path, mib: float, rounds: int) -> Path:
    job = root / f"transfer-{mib:g}mib"
    (job / "app" / "config").mkdir(parents=True)
    (job / "app" / "custom").mkdir(parents=True)
    (job / "meta.json").write_text(json.dumps(
        {"name": job.name, "deploy_map": {"app": ["server", "@ALL"]}, "min_clients": 2}))
    (job / "app" / "config" / "config_server.json").write_text(json.dumps({
        "format_version": 2,
        "workflows": [{"id": "fedavg", "path": "runtime.workflows.FedAvg",
                       "args": {"num_rounds": rounds, "persistor_id": "persistor", "timeout": 3600}}],
        "components": [{"id": "persistor", "path": "big.BigModel", "args": {"mib": mib}}]}))
    (job / "app" / "config" / "config_client.json").write_text(json.dumps({
        "format_version": 2,
        "executors": [{"tasks": ["*"], "executor": {
            "path": "runtime.client.executors.ScriptExecutor", "args": {"script": "client.py"}}}]}))
    (job / "app" / "custom" / "big.py").write_text(textwrap.dedent(PERSISTOR))
    (job / "app" / "custom" / "client.py").write_text(textwrap.dedent(CLIENT))
    return job


def vm_hwm_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def run_size(mib: float, rounds: int, work: Path) -> dict:
    from runtime.federation import poc

    root = work / f"poc-{mib:g}"
    poc.prepare(root, 2, heartbeat_interval=2.0, lost_after=60.0)
    t_start = time.monotonic()
    m = poc.start(root)
    start_s = time.monotonic() - t_start
    procs = poc.running(root)
    events: list[dict] = []
    try:
        with poc.admin_session(root, timeout=60) as s:  # mutual TLS on a secure POC
            stream = s.watch(types=["round_started", "task_result", "job_status"])

            def collect() -> None:
                for ev in stream:
                    events.append({"type": ev.type, "ts": ev.ts, **ev.data})

            threading.Thread(target=collect, daemon=True).start()
            job = make_job(work, mib, rounds)
            t0 = time.monotonic()
            job_id = s.submit_job(job)
            final = s.wait_for_job(job_id, timeout=3600)
            wall = time.monotonic() - t0
            stream.close()
        server_hwm = vm_hwm_mib(procs["server"].pid)
        agent_hwm = {n: vm_hwm_mib(p.pid) for n, p in procs.items() if n != "server"}
        logs = root / "server" / "jobs" / job_id / "logs"
        site_text = {site: (logs / f"{site}.log").read_text(errors="replace") if (logs / f"{site}.log").is_file() else ""
                     for site in ("site-1", "site-2")}
    finally:
        poc.stop(root)
    if final["status"] != "COMPLETED":
        raise SystemExit(f"{mib:g} MiB: job {final['status']}: {final.get('reason')}")
    started = {e["round"]: e["ts"] for e in events if e["type"] == "round_started"}
    results = [e for e in events if e["type"] == "task_result"]
    nbytes = int(mib * MiB)
    down, up, job_rss = [], [], {}
    for site, text in site_text.items():
        recv = {int(r): float(t) for r, t in re.findall(rf"RECV {site} round=(\d+) t=([\d.]+)", text)}
        send = {int(r): float(t) for r, t in re.findall(rf"SEND {site} round=(\d+) t=([\d.]+)", text)}
        rss = [float(x) for x in re.findall(rf"PEAK_RSS_MIB {site} (\d+)", text)]
        job_rss[site] = max(rss) if rss else None
        site_results = sorted(e["ts"] for e in results if e["site"] == site)
        for r, t in sorted(recv.items()):
            if r in started:
                down.append(t - started[r])
        for (r, t), t_res in zip(sorted(send.items()), site_results):
            up.append(t_res - t)
    return {"mib": mib, "rounds": rounds, "wall": wall, "poc_start": start_s,
            "down_s": down, "up_s": up, "nbytes": nbytes,
            "server_hwm": server_hwm, "agent_hwm": agent_hwm, "job_rss": job_rss}


def first_touch_mb_s() -> float:
    import subprocess

    code = ("import numpy as np, time; t = time.perf_counter(); a = np.ones(64 << 20, np.float32); "
            "print(256 * 1.048576 / (time.perf_counter() - t))")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mib", default="1024,2560", help="model sizes in MiB (default 1024,2560)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", help="where POCs go (default: a temp folder, removed after)")
    ap.add_argument("--prefault-gib", type=float, default=0.0,
                    help="first touch this much memory once before measuring (see below)")
    args = ap.parse_args()
    sizes = [float(x) for x in args.sizes_mib.split(",")]
    print(f"transfer benchmark: {platform.node()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
          f"POC, 2 sites, {args.rounds} rounds, gRPC on 127.0.0.1")
    print(f"memory first-touch speed now: {first_touch_mb_s():.0f} MB/s (256 MiB in a fresh array)")
    if args.prefault_gib:
        # Some VMs back guest memory lazily: the first touch of a page the guest never used costs
        # a hypervisor fault (~250 MB/s on the machine this was written on, 20x slower than
        # memory that was touched once). Touching it once first measures flshell, not that.
        t0 = time.monotonic()
        import numpy as np

        block = np.ones(int(args.prefault_gib * 1024**3) // 8)
        del block
        print(f"prefaulted {args.prefault_gib:g} GiB in {time.monotonic() - t0:.1f} s; "
              f"first-touch speed now: {first_touch_mb_s():.0f} MB/s")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="flshell-transfer-"))
    rows = []
    try:
        for mib in sizes:
            r = run_size(mib, args.rounds, work)
            rows.append(r)
            mb = r["nbytes"] / 1e6
            med_down, med_up = statistics.median(r["down_s"]), statistics.median(r["up_s"])
            print(f"\n{mib:g} MiB model ({mb:.0f} MB), {args.rounds} rounds: wall {r['wall']:.1f} s "
                  f"(poc start {r['poc_start']:.2f} s)")
            print(f"  server -> site: median {med_down:.2f} s = {mb / med_down:.0f} MB/s per site "
                  f"(all: {', '.join(f'{x:.2f}' for x in r['down_s'])} s)")
            print(f"  site -> server: median {med_up:.2f} s = {mb / med_up:.0f} MB/s per site "
                  f"(all: {', '.join(f'{x:.2f}' for x in r['up_s'])} s)")
            print(f"  peak RSS: server {r['server_hwm']:.0f} MiB = {r['server_hwm'] / mib:.2f}x model; "
                  + "; ".join(f"{s} job process {v:.0f} MiB = {v / mib:.2f}x" for s, v in r["job_rss"].items() if v)
                  + "; agents " + ", ".join(f"{v:.0f} MiB" for v in r["agent_hwm"].values() if v))
    finally:
        if not args.workdir:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
