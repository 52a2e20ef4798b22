"""The example's non-IID problem: 4-class points in 10 dimensions (class means far enough apart
to learn, close enough to confuse), split over the sites unequally: each site holds mostly two
classes, and the sites hold 60 to 600 points. Generated from a seed, nothing downloaded."""

from __future__ import annotations

import numpy as np

DIM, CLASSES = 10, 4
SITE_SIZES = [600, 60, 300, 120, 450, 90, 200, 240]  # site-1 .. site-8
SITE_CLASSES = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3), (2, 0), (3, 1)]  # their main classes
SITE_STEPS = [20, 2, 10, 4, 16, 3, 8, 6]  # local gradient steps per round: unequal, as sites are


def _means() -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 0.7, size=(CLASSES, DIM))


def _points(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    return _means()[labels] + rng.normal(0.0, 1.0, size=(len(labels), DIM))


def site_data(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Site k's (X, y): 80% of its points from its two main classes, 20% from the others."""
    rng = np.random.default_rng(100 + k)
    n = SITE_SIZES[(k - 1) % len(SITE_SIZES)]
    main = SITE_CLASSES[(k - 1) % len(SITE_CLASSES)]
    labels = np.where(rng.random(n) < 0.8, rng.choice(main, size=n), rng.integers(0, CLASSES, size=n))
    return _points(rng, labels), labels


def test_data(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Held-out points, every class alike."""
    rng = np.random.default_rng(7)
    labels = rng.integers(0, CLASSES, size=n)
    return _points(rng, labels), labels


def initial_model() -> dict[str, np.ndarray]:
    return {"W": np.zeros((DIM, CLASSES)), "b": np.zeros(CLASSES)}


def loss_and_grad(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray):
    """Softmax cross-entropy (mean over the points) and its gradient."""
    logits = X @ params["W"] + params["b"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.mean(np.log(p[np.arange(n), y] + 1e-12)))
    p[np.arange(n), y] -= 1.0
    return loss, {"W": X.T @ p / n, "b": p.mean(axis=0)}


def accuracy(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(X @ params["W"] + params["b"], axis=1) == y))
