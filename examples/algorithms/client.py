"""A site of the example: full-batch gradient steps on its own shard of data.py's problem, as
many as SITE_STEPS gives it, with FedProx's term or SCAFFOLD's correction when the server sends
them (runtime.client.algorithms)."""

import argparse

import numpy as np

import runtime.client as flare
from data import SITE_STEPS, accuracy, loss_and_grad, site_data
from runtime.client.algorithms import ScaffoldHelper, fedprox_grad
from runtime.model import FLModel

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()

flare.init()
k = int(flare.get_site_name().split("-")[-1])
X, y = site_data(k)
steps = SITE_STEPS[(k - 1) % len(SITE_STEPS)]
scaffold = ScaffoldHelper()

while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    x = {name: np.asarray(v, dtype=np.float64) for name, v in model.params.items()}
    if flare.is_evaluate():
        loss, _ = loss_and_grad(x, X, y)
        flare.send(FLModel(metrics={"loss": loss, "accuracy": accuracy(x, X, y)}))
        continue
    mu = float(model.meta.get("fedprox_mu", 0.0))
    use_scaffold = "scaffold_c_global" in model.meta
    if use_scaffold:
        scaffold.start_round(model)
    w = {name: v.copy() for name, v in x.items()}
    for _ in range(steps):
        _, g = loss_and_grad(w, X, y)
        if mu:
            g = {n: g[n] + d for n, d in fedprox_grad(w, x, mu).items()}
        if use_scaffold:
            g = {n: g[n] + c for n, c in scaffold.correction().items()}
        w = {n: w[n] - args.lr * g[n] for n in w}
    meta = scaffold.end_round(w, args.lr, steps) if use_scaffold else {"NUM_STEPS_CURRENT_ROUND": steps}
    loss, _ = loss_and_grad(x, X, y)
    flare.send(FLModel(params=w, meta=meta, metrics={"loss": loss, "accuracy": accuracy(x, X, y)}))
