"""The GPU check, for a machine with an NVIDIA GPU (see tests/gpu/README.md).

Runs `flshell sim hello-pt -n 4 -gpu 0` (worker-process mode: one worker on GPU 0, its four
sites taking turns) and, while it runs, samples the GPU three ways: NVML directly (utilisation,
memory, the processes on the GPU), the sites' heartbeats through the admin port (`list_sites`:
the per-GPU load each site reports, its processes named by job), and the admin service's
history (`gpu_history`, the console's `gpu`). Prints what it saw and a PASS/FAIL line per check;
exits 1 if a check failed.

    python3 tests/gpu/gpu_check.py [--samples 16384] [--rounds 6] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def nvml_sample(nv, handle) -> dict:
    util = nv.nvmlDeviceGetUtilizationRates(handle).gpu
    mem = nv.nvmlDeviceGetMemoryInfo(handle)
    try:
        procs = [(p.pid, int(p.usedGpuMemory or 0)) for p in nv.nvmlDeviceGetComputeRunningProcesses(handle)]
    except Exception as e:  # noqa: BLE001 - some sandboxes hide the process list
        procs = [f"unavailable: {e}"]
    return {"t": round(time.time(), 2), "util": util, "mem_used_mib": mem.used >> 20, "procs": procs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16384, help="training samples per site")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="where to write samples.jsonl")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    import torch

    import flshell
    from runtime.admin import Session

    try:  # without NVML (a dry run on a CPU machine) the flow runs and the GPU checks fail
        import pynvml as nv

        nv.nvmlInit()
        handle = nv.nvmlDeviceGetHandleByIndex(0)
        name = nv.nvmlDeviceGetName(handle)
    except Exception as e:  # noqa: BLE001
        nv = handle = None
        name = f"none ({type(e).__name__}: {e})"
    print(f"flshell from {Path(flshell.__file__).parent}; torch {torch.__version__}, "
          f"CUDA available: {torch.cuda.is_available()}; GPU 0: {name}")

    tmp = Path(tempfile.mkdtemp(prefix="flshell-gpu-check-"))
    job, ws = tmp / "hello-pt", tmp / "ws"
    subprocess.run([sys.executable, str(REPO / "examples" / "hello-pt" / "job.py"), "--n_clients", "4",
                    "--num_rounds", str(args.rounds), "--samples", str(args.samples), "--export",
                    "--export-dir", str(job)], check=True, cwd=tmp)
    cmd = [sys.executable, "-m", "flshell.cli", "sim", str(job), "-n", "4", "-gpu", "0", "-w", str(ws)]
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.monotonic()
    sim = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"})
    lines: list[str] = []
    address: list[str] = []

    def read() -> None:
        assert sim.stdout is not None
        for line in sim.stdout:
            lines.append(line.rstrip("\n"))
            print("  | " + line.rstrip("\n"), flush=True)
            m = re.search(r"admin port: (\S+)", line)
            if m:
                address.append(m.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    nvml, beats, console_gpu, history = [], [], [], {}
    last_beat = 0.0
    while sim.poll() is None:
        if nv is not None:
            nvml.append(nvml_sample(nv, handle))
        if address and time.monotonic() - last_beat > 2.0:
            last_beat = time.monotonic()
            try:
                with Session(address[0]) as s:
                    for site in s.list_sites():
                        info = site.get("info") or {}
                        beats.append({"t": round(time.time(), 2), "site": site["name"],
                                      "worker_pid": info.get("worker_pid"), "gpus": info.get("gpus"),
                                      "gpu_note": info.get("gpu_note")})
                    if len(beats) >= 8 and not history:
                        history = s.gpu_history()
                if len(beats) >= 8 and not console_gpu:
                    console_gpu = subprocess.run(
                        [sys.executable, "-m", "flshell.cli", "--server", address[0], "-c", "gpu"],
                        capture_output=True, text=True, timeout=60, cwd=tmp,
                        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}).stdout.splitlines()
            except Exception as e:  # noqa: BLE001 - the sim may be ending; keep sampling
                beats.append({"t": round(time.time(), 2), "error": f"{type(e).__name__}: {e}"})
        time.sleep(0.5)
    reader.join(5)
    wall = time.monotonic() - t0
    with open(out_dir / "samples.jsonl", "w") as f:
        for rec in nvml:
            f.write(json.dumps({"nvml": rec}) + "\n")
        for rec in beats:
            f.write(json.dumps({"heartbeat": rec}, default=str) + "\n")

    (job_dir,) = (ws / "server" / "jobs").iterdir()
    rounds = [json.loads(p.read_text()) for p in sorted((job_dir / "rounds").glob("round_*.json"))]
    print(f"\nsim exit {sim.returncode}, wall {wall:.1f}s")
    print("per-round seconds:", [r["seconds"] for r in rounds])
    print("accuracy per round:", [round(r["metrics"].get("accuracy", float("nan")), 3) for r in rounds])
    utils = [s["util"] for s in nvml]
    print(f"NVML: {len(nvml)} samples every 0.5s; util max {max(utils, default=0)}%, "
          f"mean {sum(utils) / max(len(utils), 1):.0f}%; memory max "
          f"{max((s['mem_used_mib'] for s in nvml), default=0)} MiB")
    gpu_pids = sorted({p[0] for s in nvml for p in s["procs"] if isinstance(p, tuple)})
    worker_pids = sorted({b["worker_pid"] for b in beats if b.get("worker_pid")})
    print(f"pids NVML saw on GPU 0: {gpu_pids}; worker pids from heartbeats: {worker_pids}")
    with_gpus = [b for b in beats if b.get("gpus")]
    print(f"heartbeats sampled: {len(beats)}, with GPU load: {len(with_gpus)}")
    for b in with_gpus[-2:]:
        print("  heartbeat:", json.dumps(b, default=str)[:600])
    print("console `gpu` mid-run:")
    for line in console_gpu:
        print("  " + line)
    print("gpu_history (points per site/GPU):",
          {site: {i: len(h.get("util", [])) for i, h in g.items()} for site, g in history.items()})
    device_lines = sorted({ln.split(": ", 1)[-1] for site in ("site-1", "site-2", "site-3", "site-4")
                           for ln in (ws / site / "jobs" / job_dir.name / "log.txt").read_text().splitlines()
                           if "training on" in ln})
    print("site logs:", device_lines)

    checks = {
        "job COMPLETED": sim.returncode == 0 and any("COMPLETED" in ln for ln in lines),
        "sites trained on cuda": bool(device_lines) and all("cuda" in d for d in device_lines),
        "GPU busy while training (util > 0)": max(utils, default=0) > 0,
        "heartbeats carry GPU 0's load": bool(with_gpus),
        "a worker pid is on GPU 0 (NVML)": bool(set(gpu_pids) & set(worker_pids)),
        "GPU processes named by job id": any(p.get("job_id") for b in with_gpus for g in b["gpus"]
                                             for p in g.get("processes") or []),
        "server kept a GPU history": any(len(h.get("util", [])) > 1 for g in history.values()
                                         for h in g.values()),
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
