"""Params as float64 numpy arrays for a server rule's arithmetic, and back to what the model
holds (each param's own dtype, numpy or torch): the rules of FedNova, SCAFFOLD and FedOpt are
computed in float64 whatever the sites train in."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def as_float64(value: Any) -> np.ndarray:
    """One param as a float64 numpy array (a torch tensor is copied to the CPU first)."""
    if is_torch(value):
        return value.detach().to("cpu").double().numpy()
    return np.asarray(value, dtype=np.float64)


def to_float64(params: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: as_float64(v) for k, v in params.items()}


def cast_like(value: np.ndarray, like: Any) -> Any:
    """float64 `value` as the kind and dtype of `like` (integers rounded)."""
    if is_torch(like):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(value))
        if not like.dtype.is_floating_point:
            t = t.round()
        return t.to(dtype=like.dtype, device=like.device)
    dtype = np.asarray(like).dtype
    return np.rint(value).astype(dtype) if dtype.kind in "iub" else value.astype(dtype, copy=False)


def params_like(values: dict[str, np.ndarray], template: dict[str, Any]) -> dict[str, Any]:
    return {k: cast_like(v, template[k]) for k, v in values.items()}
