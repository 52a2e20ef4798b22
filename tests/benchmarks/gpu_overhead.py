"""The runtime's per-round overhead on a GPU: hello-pt with N sites on one GPU
(`flshell sim -n N -gpu 0`: one worker process, its sites taking turns on the GPU) vs the same
training loop run alone in one process (the same sites' data, model, optimizer and epochs,
one site after another, then a plain average), per round, as a ratio.

Run: python tests/benchmarks/gpu_overhead.py [--sites 4] [--rounds 6] [--samples 4096]
Without CUDA it measures the same on the CPU (and says so). The first round of each is left
out of the medians (CUDA context, cuDNN autotuning, imports).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELLO_PT = ROOT / "examples" / "hello-pt"


def sim_rounds(n: int, rounds: int, samples: int, gpu: str | None) -> tuple[list[float], float, str]:
    """(seconds of each round as the server recorded it, whole wall time, site-1's device line)."""
    tmp = Path(tempfile.mkdtemp(prefix="flshell-gpu-bench-"))
    try:
        job = tmp / "job"
        subprocess.run([sys.executable, str(HELLO_PT / "job.py"), "--n_clients", str(n),
                        "--num_rounds", str(rounds), "--samples", str(samples), "--export",
                        "--export-dir", str(job)], check=True, capture_output=True, cwd=ROOT)
        cmd = [sys.executable, "-m", "flshell.cli", "sim", str(job), "-n", str(n), "-q",
               "--no-admin", "-w", str(tmp / "ws")]
        cmd += ["-gpu", gpu] if gpu is not None else ["--processes", "-t", "1"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"flshell sim failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        (job_dir,) = (tmp / "ws" / "server" / "jobs").iterdir()
        secs = [json.loads(p.read_text())["seconds"]
                for p in sorted((job_dir / "rounds").glob("round_*.json"))]
        log = (tmp / "ws" / "site-1" / "jobs" / job_dir.name / "log.txt").read_text()
        device = next((m.group(0) for m in re.finditer(r"site-1: training on .*", log)), "?")
        return secs, wall, device
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def alone_rounds(n: int, rounds: int, samples: int, device_name: str) -> list[float]:
    """hello-pt's client loop for n sites, one after another, in this process, no runtime."""
    import torch

    sys.path.insert(0, str(HELLO_PT / "app" / "custom"))
    from data import site_data, test_data
    from model import SimpleNetwork, train_epoch

    device = torch.device(device_name)
    global_net = SimpleNetwork(seed=0)
    state = {k: v.clone() for k, v in global_net.state_dict().items()}
    data = [tuple(torch.from_numpy(a) for a in site_data(k, samples, 0.5)) for k in range(1, n + 1)]
    xt, yt = (torch.from_numpy(a).to(device) for a in test_data())
    nets = [SimpleNetwork().to(device) for _ in range(n)]
    shuffles = [torch.Generator().manual_seed(k) for k in range(1, n + 1)]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        results = []
        for net, (x, y), shuffle in zip(nets, data, shuffles):
            net.load_state_dict(state)
            net.eval()
            with torch.no_grad():
                float((net(xt).argmax(1) == yt).float().mean())
            optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
            order = torch.randperm(len(y), generator=shuffle)
            train_epoch(net, optimizer, x, y, order, device, lambda loss: None)
            results.append({k: v.cpu() for k, v in net.state_dict().items()})
        state = {k: sum(r[k].double() for r in results).div(n).to(results[0][k].dtype)
                 for k in results[0]}
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--samples", type=int, default=4096, help="training samples per site")
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    where = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores), no CUDA"
    print(f"hello-pt, {args.sites} sites x {args.samples} samples, {args.rounds} rounds, on {where}")
    secs, wall, device_line = sim_rounds(args.sites, args.rounds, args.samples, "0" if cuda else None)
    alone = alone_rounds(args.sites, args.rounds, args.samples, "cuda" if cuda else "cpu")
    sim_med, alone_med = statistics.median(secs[1:]), statistics.median(alone[1:])
    print(f"flshell sim -n {args.sites} {'-gpu 0' if cuda else '--processes -t 1'}: "
          f"{wall:.1f}s wall; {device_line}")
    print(f"{'round':>5} {'sim s':>8} {'alone s':>8}")
    for i, (a, b) in enumerate(zip(secs, alone), start=1):
        print(f"{i:>5} {a:>8.3f} {b:>8.3f}")
    print(f"median per round (rounds 2..{args.rounds}): sim {sim_med:.3f}s, alone {alone_med:.3f}s, "
          f"ratio {sim_med / alone_med:.2f}x, overhead {1000 * (sim_med - alone_med):.0f} ms/round")
    return 0


if __name__ == "__main__":
    sys.exit(main())
