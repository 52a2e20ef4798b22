"""hello-lr site script: the gradient and Hessian of this site's log-likelihood at the global w.

The server (runtime.workflows.newton_raphson.NewtonRaphson) sums them over the sites and takes
the Newton-Raphson step; the site never trains on its own, and its data never leaves it.

With X_k = [1, x] (intercept first) and p = sigmoid(X_k w):
    gradient = X_k^T (y - p)                      (of the log-likelihood: ascent direction)
    hessian  = -X_k^T diag(p (1 - p)) X_k         (negative definite)
"""

import argparse
import re

import numpy as np

import runtime.client as flare

from data import add_intercept, sigmoid, site_data


def site_index(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    if not m:
        raise SystemExit(f"hello-lr: site name {name!r} does not end in a number (site-1, site-2...)")
    return int(m.group(1))


def gradient_hessian(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = sigmoid(x @ w)
    return x.T @ (y - p), -(x.T * (p * (1.0 - p))) @ x


def log_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood: log(1 + e^z) - y z, computed without overflow."""
    z = x @ w
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((x @ w > 0) == (y > 0.5)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num_features", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    raw_x, y = site_data(site_index(site), args.num_features, args.seed)
    x = add_intercept(raw_x)
    print(f"{site}: {len(y)} samples, {args.num_features} features, {int(y.sum())} positive")

    while flare.is_running():
        model = flare.receive()
        w = np.asarray(model.params["w"], dtype=np.float64)
        if w.shape != (x.shape[1],):
            raise ValueError(f"{site}: received w of shape {w.shape}, expected ({x.shape[1]},): "
                             f"the server's num_features must be {args.num_features}")
        g, h = gradient_hessian(w, x, y)
        loss, acc = log_loss(w, x, y), accuracy(w, x, y)
        print(f"{site}: round {model.current_round + 1}/{model.total_rounds}: "
              f"loss {loss:.4f}, accuracy {acc:.3f} of the received w")
        flare.send(flare.FLModel(
            params={"gradient": g, "hessian": h},
            metrics={"loss": loss, "accuracy": acc},  # of the model we received
            meta={"NUM_STEPS_CURRENT_ROUND": len(y)},
        ))


if __name__ == "__main__":
    main()
