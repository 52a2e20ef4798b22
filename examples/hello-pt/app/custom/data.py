"""Data for hello-pt: a learnable synthetic image task (no download), split non-IID.

Each class has a smooth random "prototype" image; a sample is its class prototype plus noise.
Sites get label-skewed shares drawn from a Dirichlet(alpha) (small alpha: each site sees few
classes). Everything is derived from fixed seeds, so every run sees the same data.

With --data-path DIR holding CIFAR-10's binary version (cifar-10-batches-bin/), the same split
is applied to the real images instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_CLASSES = 10


def _prototypes(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(NUM_CLASSES, 3, 4, 4)).astype(np.float32)
    return coarse.repeat(size // 4, axis=2).repeat(size // 4, axis=3)  # smooth 4x4 blocks


def synthetic(n: int, labels_p: np.ndarray, seed: int, size: int = 16, noise: float = 1.5):
    """n samples with labels drawn from `labels_p`."""
    rng = np.random.default_rng(seed)
    y = rng.choice(NUM_CLASSES, size=n, p=labels_p)
    x = _prototypes(size, 1234)[y] + noise * rng.normal(size=(n, 3, size, size)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


def site_label_dist(site_index: int, alpha: float, seed: int = 0) -> np.ndarray:
    """The site's share of each class: Dirichlet(alpha), fixed per site."""
    rng = np.random.default_rng([seed, site_index])
    return rng.dirichlet(np.full(NUM_CLASSES, alpha))


def load_cifar10_bin(root: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary version: records of 1 label byte + 3072 pixel bytes (no pickle)."""
    base = Path(root) / "cifar-10-batches-bin"
    files = [base / f"data_batch_{i}.bin" for i in range(1, 6)] if train else [base / "test_batch.bin"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 binary files not found: {', '.join(missing)}")
    raw = np.concatenate([np.fromfile(f, dtype=np.uint8).reshape(-1, 3073) for f in files])
    y = raw[:, 0].astype(np.int64)
    x = raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return (x - 0.5) / 0.25, y


def site_data(site_index: int, n: int, alpha: float, data_path: str | None = None):
    """This site's training set: label-skewed by Dirichlet(alpha)."""
    p = site_label_dist(site_index, alpha)
    if data_path is None:
        return synthetic(n, p, seed=1000 + site_index)
    x, y = load_cifar10_bin(data_path, train=True)
    rng = np.random.default_rng(site_index)
    weights = p[y] / p[y].sum()
    idx = rng.choice(len(y), size=min(n, len(y)), replace=False, p=weights)
    return x[idx], y[idx]


def test_data(n: int = 1000, data_path: str | None = None):
    """A balanced evaluation set, the same on every site."""
    if data_path is None:
        return synthetic(n, np.full(NUM_CLASSES, 1 / NUM_CLASSES), seed=99)
    x, y = load_cifar10_bin(data_path, train=False)
    return x[:n], y[:n]
