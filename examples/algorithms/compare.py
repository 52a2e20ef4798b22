"""Runs FedAvg, FedProx, FedNova, SCAFFOLD, FedOpt (Adam) and FedAvg with the median on the same
non-IID problem (data.py: unequal data, unequal local steps) and prints a table: rounds, final
loss and accuracy of the global model on held-out data, and wall time.

    python examples/algorithms/compare.py [--sites 8] [--rounds 30] [--lr 0.1]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from data import accuracy, initial_model, loss_and_grad, site_data, test_data  # noqa: E402
from runtime.recipes import (FedAvgRecipe, FedNovaRecipe, FedOptRecipe, FedProxRecipe,  # noqa: E402
                             ScaffoldRecipe, SimEnv)

ALGORITHMS = [
    ("FedAvg", FedAvgRecipe, {}),
    ("FedProx (mu=0.1)", FedProxRecipe, {"mu": 0.1}),
    ("FedNova", FedNovaRecipe, {}),
    ("SCAFFOLD", ScaffoldRecipe, {}),
    ("FedOpt Adam (lr=0.05)", FedOptRecipe, {"optimizer": "adam", "server_lr": 0.05}),
    ("FedAvg, median", FedAvgRecipe, {"aggregator": "median"}),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.1, help="the sites' step size")
    args = ap.parse_args()
    X, y = test_data()
    print(f"{args.sites} sites (non-IID: two main classes each, 60-600 points, 2-20 local steps), "
          f"{args.rounds} rounds, site lr {args.lr:g}; the global model on 2000 held-out points")
    print(f"{'algorithm':<24}{'rounds':>7}{'loss':>9}{'accuracy':>10}{'wall s':>9}")
    with tempfile.TemporaryDirectory(prefix="flshell-algorithms-") as tmp:
        for name, cls, extra in ALGORITHMS:
            recipe = cls(name.split(" ")[0].lower().strip(","), initial_model=initial_model(),
                         min_clients=args.sites, num_rounds=args.rounds,
                         train_script=str(HERE / "client.py"), train_args=f"--lr {args.lr}",
                         key_metric=None, **extra)
            t0 = time.perf_counter()
            run = recipe.execute(SimEnv(num_clients=args.sites, workspace_root=tmp))
            wall = time.perf_counter() - t0
            if run.get_status() != "COMPLETED":
                print(f"{name}: {run.get_status()}\n{run.get_log()[-2000:]}")
                return 1
            with np.load(Path(run.get_result()) / "global_model.npz", allow_pickle=False) as d:
                params = {k: d[k] for k in d.files}
            loss, _ = loss_and_grad(params, X, y)
            print(f"{name:<24}{args.rounds:>7}{loss:>9.4f}{accuracy(params, X, y):>10.3f}{wall:>9.2f}")
    pooled = _pooled_fit(args.sites, args.lr)  # what the data allows, for comparison
    loss, _ = loss_and_grad(pooled, X, y)
    print(f"{'(pooled data, no FL)':<24}{'':>7}{loss:>9.4f}{accuracy(pooled, X, y):>10.3f}")
    return 0


def _pooled_fit(sites: int, lr: float, steps: int = 3000) -> dict:
    """Full-batch gradient descent on every site's data pooled in one place."""
    shards = [site_data(k) for k in range(1, sites + 1)]
    Xp, yp = np.concatenate([s[0] for s in shards]), np.concatenate([s[1] for s in shards])
    w = initial_model()
    for _ in range(steps):
        _, g = loss_and_grad(w, Xp, yp)
        w = {n: w[n] - lr * g[n] for n in w}
    return w


if __name__ == "__main__":
    sys.exit(main())
