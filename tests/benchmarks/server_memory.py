"""Server memory while many sites return a big model: aggregation as results arrive.

50 simulated sites each return a 40 MB float64 model (FedAvg, 2 rounds). A sampler thread
classifies live allocations (tracemalloc) as the server's (engine, workflows, the transport's
result copy) or the sites', and prints the server's peak as a multiple of the model size, with
the whole process's peak RSS beside it. Run: python tests/benchmarks/server_memory.py
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

from runtime.sim.simulator import Simulator

SERVER_MARKERS = ("runtime/server/", "runtime/workflows/")


def make_job(root: Path, n_floats: int, rounds: int) -> Path:
    app = root / "bigjob" / "app"
    (app / "config").mkdir(parents=True)
    (app / "custom").mkdir()
    np.savez(app / "initial.npz", w=np.zeros(n_floats))
    (root / "bigjob" / "meta.json").write_text(json.dumps(
        {"name": "bigjob", "deploy_map": {"app": ["server", "@ALL"]}, "min_clients": 1}))
    (app / "config" / "config_server.json").write_text(json.dumps({
        "format_version": 2,
        "workflows": [{"path": "runtime.workflows.FedAvg",
                       "args": {"num_rounds": rounds, "persistor_id": "p"}}],
        "components": [{"id": "p", "path": "runtime.workflows.NumpyModelPersistor",
                        "args": {"path": str(app / "initial.npz")}}],
    }))
    (app / "config" / "config_client.json").write_text(json.dumps({
        "format_version": 2,
        "executors": [{"tasks": ["train"], "executor": {
            "path": "runtime.client.executors.ScriptExecutor", "args": {"script": "client.py"}}}],
    }))
    (app / "custom" / "client.py").write_text(
        "import runtime.client as flare\n"
        "flare.init()\n"
        "k = float(flare.get_site_name().split('-')[-1])\n"
        "while flare.is_running():\n"
        "    m = flare.receive()\n"
        "    w = m.params['w']\n"
        "    w += k\n"  # in place on the site's own copy
        "    del m\n"
        "    flare.send(flare.FLModel(params={'w': w}))\n"
        "    del w\n"
    )
    return root / "bigjob"


class Sampler(threading.Thread):
    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.server_peak = 0
        self.site_peak = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            snap = tracemalloc.take_snapshot()
            server = site = 0
            for trace in snap.traces:
                if trace.size < 1 << 20:
                    continue  # only big buffers matter here
                files = [f.filename for f in trace.traceback]
                if any(m in f for f in files for m in SERVER_MARKERS) or any(
                        f.endswith("inproc.py") for f in files[-3:]) and "submit_result" in str(trace.traceback):
                    server += trace.size
                else:
                    site += trace.size
            self.server_peak = max(self.server_peak, server)
            self.site_peak = max(self.site_peak, site)
            self.samples += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=50)
    ap.add_argument("--mb", type=float, default=40.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4, help="-t: sites working at once")
    args = ap.parse_args()
    n_floats = int(args.mb * 1e6 / 8)
    model_mb = n_floats * 8 / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        job = make_job(Path(tmp), n_floats, args.rounds)
        tracemalloc.start(25)
        sampler = Sampler(0.002)
        sim = Simulator(job, workspace=Path(tmp) / "ws", n_clients=args.sites,
                        threads=args.threads)
        sim.prepare()
        sampler.start()
        t0 = time.monotonic()
        sim.start()
        res = sim.wait()
        wall = time.monotonic() - t0
        sampler.stop.set()
        sampler.join()
        tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"status {res.status}: {args.sites} sites x {model_mb:.0f} MB model, {args.rounds} rounds, "
          f"-t {args.threads}, {wall:.1f}s ({sampler.samples} samples)")
    print(f"server peak (tracemalloc, buffers >= 1 MiB): {sampler.server_peak / 1e6:8.0f} MB = "
          f"{sampler.server_peak / 1e6 / model_mb:.2f} x model")
    print(f"sites peak  (tracemalloc, buffers >= 1 MiB): {sampler.site_peak / 1e6:8.0f} MB = "
          f"{sampler.site_peak / 1e6 / model_mb:.2f} x model")
    print(f"process peak RSS:                           {rss_mb:8.0f} MiB")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
