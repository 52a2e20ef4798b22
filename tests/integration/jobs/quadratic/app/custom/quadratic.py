"""A site of the quadratic test problem: site k minimises f_k(w) = 1/2 a_k ||w - t_k||^2 by K_k
steps of plain gradient descent of size lr per round (deterministic, float64), with the FedProx
term or the SCAFFOLD correction when the server asks for them. It writes every model it receives
(as exact JSON floats) to received.jsonl in its workspace, so a test can read the trajectory."""

import argparse
import json
from pathlib import Path

import numpy as np

import runtime.client as flare
from runtime.client.algorithms import ScaffoldHelper, fedprox_grad
from runtime.model import FLModel

SITES = {  # k: (a_k, t_k, K_k)
    1: (1.0, [1.0, 0.0, -1.0], 1),
    2: (1.0, [3.0, 2.0, 0.0], 4),
    3: (1.0, [-2.0, 1.0, 2.0], 9),
    4: (1.0, [0.5, -3.0, 1.0], 2),
    5: (1.0, [2.0, 2.0, 2.0], 6),
}

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--curvatures", default="", help="a_k for k = 1..5, comma-separated")
parser.add_argument("--byzantine", default="", help="sites that send 1e6 instead of training")
parser.add_argument("--sleep", type=float, default=0.0, help="seconds each training round takes")
args = parser.parse_args()

flare.init()
site = flare.get_site_name()
k = int(site.split("-")[-1])
a, t, steps = SITES[k]
if args.curvatures:
    a = float(args.curvatures.split(",")[k - 1])
t = np.array(t, dtype=np.float64)
liar = site in args.byzantine.split(",")
record = Path(flare.system_info()["workspace"]) / "received.jsonl"
scaffold = ScaffoldHelper()
local = None  # this site's last trained model (cross-site evaluation asks for it)


def loss(w):
    return 0.5 * a * float(np.sum((w - t) ** 2))


while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    if flare.is_evaluate():
        w = np.asarray(model.params["w"], dtype=np.float64)
        flare.send(FLModel(metrics={"loss": loss(w)}))
        continue
    if flare.is_submit_model():
        flare.send(FLModel(params={"w": local if local is not None else np.zeros(3)}))
        continue
    x = np.asarray(model.params["w"], dtype=np.float64)
    if args.sleep:
        import time

        time.sleep(args.sleep)
    with open(record, "a") as f:
        f.write(json.dumps({"round": model.current_round, "w": x.tolist()}) + "\n")
    if liar:
        flare.send(FLModel(params={"w": np.full(3, 1e6)}, meta={"NUM_STEPS_CURRENT_ROUND": steps}))
        continue
    mu = float(model.meta.get("fedprox_mu", 0.0))
    use_scaffold = "scaffold_c_global" in model.meta
    if use_scaffold:
        scaffold.start_round(model)
    w = x.copy()
    for _ in range(steps):
        g = a * (w - t)
        if mu:
            g = g + fedprox_grad({"w": w}, {"w": x}, mu)["w"]
        if use_scaffold:
            g = g + scaffold.correction()["w"]
        w = w - args.lr * g
    local = w
    meta = {"NUM_STEPS_CURRENT_ROUND": steps}
    if use_scaffold:
        meta = scaffold.end_round({"w": w}, args.lr, steps)
    flare.send(FLModel(params={"w": w}, metrics={"loss": loss(x)}, meta=meta))
