"""Data for hello-lr: a synthetic binary classification problem, split over heterogeneous sites.

One true model w* = (intercept, 10 coefficients) holds everywhere; site k has its own sample
size and its own feature distribution (shifted means, scaled spreads), so the sites' data look
different but the pooled data has one logistic-regression solution. Labels are drawn from
Bernoulli(sigmoid(x . w*)), so the classes overlap and the maximum-likelihood fit is finite.
Everything comes from fixed seeds: every run, every process, sees the same data.
"""

from __future__ import annotations

import numpy as np

NUM_FEATURES = 10


def true_weights(num_features: int = NUM_FEATURES, seed: int = 0) -> np.ndarray:
    """w* of num_features + 1 numbers, intercept first."""
    rng = np.random.default_rng([seed, 0])
    return np.concatenate([[-0.4], rng.normal(0.0, 0.6, size=num_features)])


def site_size(site_index: int) -> int:
    """Sites differ in size: site-1 has 120 samples, site-2 190, site-3 260, ..."""
    return 50 + 70 * site_index


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def site_data(site_index: int, num_features: int = NUM_FEATURES,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Site `site_index`'s (X, y): X of shape (n_k, num_features) without the intercept column,
    y in {0, 1} (float64)."""
    if site_index < 1:
        raise ValueError(f"site_index must be >= 1, got {site_index}")
    rng = np.random.default_rng([seed, 1, site_index])
    n = site_size(site_index)
    shift = rng.normal(0.0, 0.8, size=num_features)   # this site's feature means
    scale = rng.uniform(0.6, 1.4, size=num_features)  # and spreads
    x = shift + scale * rng.normal(size=(n, num_features))
    p = sigmoid(add_intercept(x) @ true_weights(num_features, seed))
    y = (rng.uniform(size=n) < p).astype(np.float64)
    return x, y


def add_intercept(x: np.ndarray) -> np.ndarray:
    """[1, x]: the design matrix the model's w (intercept first) multiplies."""
    return np.hstack([np.ones((x.shape[0], 1)), x])


def pooled_data(n_sites: int, num_features: int = NUM_FEATURES,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every site's data in one place: what a centralised fit would see."""
    parts = [site_data(k, num_features, seed) for k in range(1, n_sites + 1)]
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
