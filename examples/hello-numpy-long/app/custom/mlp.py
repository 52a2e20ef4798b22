"""hello-numpy-long's model and data: a one-hidden-layer MLP in numpy, trained with minibatch SGD
on a 10-class problem of Gaussian clusters that every site samples with its own class mix."""

from __future__ import annotations

import numpy as np

from runtime.model import FLModel, ParamsType

N_FEATURES, N_HIDDEN, N_CLASSES = 64, 256, 10
PROBLEM_SEED = 1234  # the same class centres on every site and on the server


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised weights (zeros would leave every hidden unit the same forever)."""
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.normal(size=(N_FEATURES, N_HIDDEN)) * np.sqrt(2.0 / N_FEATURES)).astype(np.float32),
        "b1": np.zeros(N_HIDDEN, np.float32),
        "w2": (rng.normal(size=(N_HIDDEN, N_CLASSES)) * np.sqrt(2.0 / N_HIDDEN)).astype(np.float32),
        "b2": np.zeros(N_CLASSES, np.float32),
    }


def _centres() -> np.ndarray:
    return np.random.default_rng(PROBLEM_SEED).normal(scale=0.3, size=(N_CLASSES, N_FEATURES))


def site_data(index: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Site `index`'s training set: mostly classes index-1, index, index+1 (mod 10), so no site
    alone learns every class and the federation's model beats each site's own."""
    rng = np.random.default_rng(PROBLEM_SEED + index)
    prior = np.full(N_CLASSES, 0.2)
    prior[[(index + j) % N_CLASSES for j in (-1, 0, 1)]] = 5.0
    y = rng.choice(N_CLASSES, size=n, p=prior / prior.sum())
    x = _centres()[y] + rng.normal(size=(n, N_FEATURES))
    return x.astype(np.float32), y


def test_data(n: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """A balanced held-out set, the same on every site."""
    rng = np.random.default_rng(PROBLEM_SEED - 1)
    y = rng.integers(0, N_CLASSES, size=n)
    x = _centres()[y] + rng.normal(size=(n, N_FEATURES))
    return x.astype(np.float32), y


def forward(p: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hidden activations, class probabilities)."""
    h = np.maximum(x @ p["w1"] + p["b1"], 0.0)
    z = h @ p["w2"] + p["b2"]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return h, e / e.sum(axis=1, keepdims=True)


def sgd_step(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> float:
    """One step of cross-entropy SGD on the batch (x, y), in place; returns the batch loss."""
    h, prob = forward(p, x)
    n = len(y)
    loss = float(-np.log(prob[np.arange(n), y] + 1e-12).mean())
    dz = prob
    dz[np.arange(n), y] -= 1.0
    dz /= n
    dh = (dz @ p["w2"].T) * (h > 0)
    p["w2"] -= lr * (h.T @ dz)
    p["b2"] -= lr * dz.sum(axis=0)
    p["w1"] -= lr * (x.T @ dh)
    p["b1"] -= lr * dh.sum(axis=0)
    return loss


def accuracy(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float((forward(p, x)[1].argmax(axis=1) == y).mean())


class MLPPersistor:
    """The server's initial model (random, from `seed`) and the last global model."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.last: FLModel | None = None

    def load_model(self) -> FLModel:
        return FLModel(params=init_params(self.seed), params_type=ParamsType.FULL)

    def save_model(self, model: FLModel) -> None:
        self.last = model
