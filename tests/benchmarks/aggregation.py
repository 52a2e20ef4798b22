"""How fast the server folds a site's result into FedAvg's order-free weighted sum, beside the
floor of a plain float32 running sum (acc += w * x, order-dependent) measured in the same run.

    python tests/benchmarks/aggregation.py [--mb 100] [--sites 4] [--repeat 3]

Prints per-result milliseconds and GB/s (of float32 params folded in), the final mean's cost,
and the ratio to the floor; the machine is shared, so compare the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runtime.model import FLModel  # noqa: E402
from runtime.workflows.aggregators import WeightedAggregator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100, help="model size in MB of float32")
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.mb * 1_000_000 // 4
    xs = [np.random.default_rng(i).normal(size=n).astype(np.float32) for i in range(args.sites)]
    ours, floor, means = [], [], []
    for _ in range(args.repeat):
        agg = WeightedAggregator()
        t0 = time.perf_counter()
        for i, x in enumerate(xs):
            agg.accept(FLModel(params={"p": x}, meta={"NUM_STEPS_CURRENT_ROUND": i + 1}))
        t1 = time.perf_counter()
        agg.result()
        t2 = time.perf_counter()
        acc = np.zeros(n, dtype=np.float32)
        t3 = time.perf_counter()
        for i, x in enumerate(xs):
            acc += np.float32(i + 1) * x
        t4 = time.perf_counter()
        ours.append((t1 - t0) / args.sites)
        means.append(t2 - t1)
        floor.append((t4 - t3) / args.sites)
    o, f, m = statistics.median(ours), statistics.median(floor), statistics.median(means)
    gb = n * 4 / 1e9
    print(f"{args.mb} MB float32 model, {args.sites} results, median of {args.repeat}")
    print(f"order-free sum   {o * 1e3:8.1f} ms/result  {gb / o:6.2f} GB/s")
    print(f"plain float32    {f * 1e3:8.1f} ms/result  {gb / f:6.2f} GB/s   (floor)")
    print(f"final mean       {m * 1e3:8.1f} ms")
    print(f"ratio            {o / f:8.2f}x the floor per result")


if __name__ == "__main__":
    main()
