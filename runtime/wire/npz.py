"""Params as .npz files (the global model on the server, initial models in job folders): numpy
arrays only, written atomically, read without pickle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """An array for saving: numpy as is, torch tensors moved to CPU numpy."""
    if isinstance(value, np.ndarray):
        return value
    detach = getattr(value, "detach", None)
    if callable(detach):  # torch tensor; bfloat16 has no numpy dtype, widen it to float32
        t = detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(value)


def save_params_npz(path: Path, params: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **{k: to_numpy(v) for k, v in params.items()})
    os.replace(tmp, path)


def load_params_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
