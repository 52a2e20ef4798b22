"""Simulator overhead: a trivial numpy job, 5 rounds, N = 2, 8, 100, 1000 sites.

Prints whole-process wall time (interpreter start included) and peak RSS per N.
Run: python tests/benchmarks/sim_overhead.py [--sizes 2,8,100,1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_measured  # noqa: E402

JOB = Path(__file__).resolve().parent / "jobs" / "trivial"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2,8,100,1000")
    ap.add_argument("--repeat", type=int, default=3, help="runs per N; the median is printed")
    ap.add_argument("--threads", type=int, help="-t for every run (default: T = N)")
    args = ap.parse_args()
    print(f"{'N':>6} {'T':>6} {'wall s (median)':>16} {'min':>7} {'max':>7} {'peak RSS MiB':>13}")
    failed = False
    for n in (int(x) for x in args.sizes.split(",")):
        walls, rss = [], []
        for _ in range(args.repeat):
            ws = tempfile.mkdtemp(prefix="flshell-bench-")
            cmd = [sys.executable, "-m", "flshell.cli", "sim", str(JOB), "-n", str(n), "-m", str(n),
                   "-q", "-w", ws]
            if args.threads:
                cmd += ["-t", str(args.threads)]
            wall, peak, rc, out = run_measured(cmd)
            shutil.rmtree(ws, ignore_errors=True)
            if rc != 0:
                print(f"N={n}: exit {rc}\n{out}")
                failed = True
                break
            walls.append(wall)
            rss.append(peak)
        if walls:
            t = args.threads or n
            print(f"{n:>6} {t:>6} {statistics.median(walls):>16.2f} {min(walls):>7.2f} "
                  f"{max(walls):>7.2f} {max(rss):>13.0f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
