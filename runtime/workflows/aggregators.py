"""Aggregators that fold site results in as they arrive, so memory stays O(model)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from runtime.model import FLModel, MetaKey, ParamsType


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


class MetricsMean:
    """The weighted mean of sites' numeric metrics, key by key (weight-0 sites drop out)."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}

    def add(self, metrics: dict[str, Any] | None, weight: float) -> None:
        for key, value in (metrics or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._sums[key] = self._sums.get(key, 0.0) + weight * float(value)
                self._weights[key] = self._weights.get(key, 0.0) + weight

    def result(self) -> dict[str, float]:
        return {k: self._sums[k] / self._weights[k] for k in self._sums if self._weights[k] > 0}


class WeightedAggregator:
    """Weighted mean of params and numeric metrics, one result at a time.

    Weight = `meta["NUM_STEPS_CURRENT_ROUND"]` (1 if absent). Floating arrays of 32 bits or
    more are accumulated in their own dtype (float64 stays exact to 1e-12); narrower floats
    and integers in float64, cast back at the end.
    """

    def __init__(self, weight_key: str = MetaKey.NUM_STEPS_CURRENT_ROUND) -> None:
        self.weight_key = weight_key
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, Any] = {}
        self._dtypes: dict[str, Any] = {}
        self._weight = 0.0
        self._metrics = MetricsMean()
        self._params_type: ParamsType | None = None
        self.count = 0
        self.sites: list[str] = []

    def weight_of(self, model: FLModel) -> float:
        raw = (model.meta or {}).get(self.weight_key, 1)
        try:
            w = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f'meta["{self.weight_key}"] must be a number, got {raw!r}') from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f'meta["{self.weight_key}"] must be a finite number >= 0, got {raw!r}')
        return w

    def accept(self, model: FLModel, take: bool = False) -> None:
        """Add a site's result. With `take`, the result's numpy arrays may become the running
        sum (scaled in place): no copy of the model, for callers that drop the result after
        (send_model_and_wait's callback). Without it, `model` is never modified."""
        site = (model.meta or {}).get("site_name", "?")
        w = self.weight_of(model)
        if model.params is not None:
            if self._params_type is None:
                self._params_type = model.params_type
            elif model.params_type != self._params_type:
                raise ValueError(
                    f"{site} sent {model.params_type} params but others sent {self._params_type}"
                )
            if self._sums and set(model.params) != set(self._sums):
                missing = sorted(set(self._sums) - set(model.params))[:5]
                extra = sorted(set(model.params) - set(self._sums))[:5]
                raise ValueError(f"{site} sent different params: missing {missing}, extra {extra}")
            for key, value in model.params.items():
                self._add(key, value, w, site, take)
        self._metrics.add(model.metrics, w)
        self._weight += w
        self.count += 1
        self.sites.append(site)

    def _add(self, key: str, value: Any, w: float, site: str, take: bool = False) -> None:
        if _is_torch(value):
            acc_dtype = value.dtype if value.is_floating_point() and value.element_size() >= 4 else None
            if key not in self._sums:
                import torch

                self._dtypes[key] = value.dtype
                self._sums[key] = torch.zeros_like(value, dtype=acc_dtype or torch.float64)
            self._sums[key].add_(value.to(self._sums[key].dtype), alpha=w)
            return
        arr = np.asarray(value)
        if key not in self._sums:
            self._dtypes[key] = arr.dtype
            wide = arr.dtype.kind in "fc" and arr.dtype.itemsize >= 4
            if take and wide and arr.flags.writeable and arr.flags.c_contiguous:
                if w != 1.0:
                    _scale(arr, w)
                self._sums[key] = arr  # the first result is the running sum: no copy
                return
            self._sums[key] = np.zeros(arr.shape, dtype=arr.dtype if wide else np.float64)
        acc = self._sums[key]
        if acc.shape != arr.shape:
            raise ValueError(f'{site} sent params["{key}"] with shape {arr.shape}, expected {acc.shape}')
        _axpy(acc, arr, w)

    def result(self) -> FLModel:
        """The weighted mean (params, metrics) of what was accepted."""
        if self.count == 0:
            raise ValueError("no results to aggregate")
        params = None
        if self._sums:
            if self._weight <= 0:
                raise ValueError("the sum of weights is 0: every site reported 0 steps")
            params = {}
            for key, acc in self._sums.items():
                mean = acc / self._weight
                dtype = self._dtypes[key]
                if _is_torch(mean):
                    params[key] = mean.round().to(dtype) if not dtype.is_floating_point else mean.to(dtype)
                elif np.dtype(dtype).kind in "iub":
                    params[key] = np.rint(mean).astype(dtype)
                else:
                    params[key] = mean.astype(dtype, copy=False)
        metrics = self._metrics.result()
        return FLModel(params=params, params_type=self._params_type, metrics=metrics,
                       meta={"num_sites": self.count, "total_weight": self._weight})


def _axpy(acc: np.ndarray, x: np.ndarray, w: float, block: int = 1 << 18) -> None:
    """acc += w * x in blocks, so the temporary stays small whatever the array size."""
    a, xv = acc.reshape(-1), x.reshape(-1)
    if w == 1.0:
        np.add(a, xv, out=a, casting="unsafe")
        return
    for i in range(0, a.size, block):
        np.add(a[i : i + block], w * xv[i : i + block], out=a[i : i + block], casting="unsafe")


def _scale(x: np.ndarray, w: float, block: int = 1 << 18) -> None:
    v = x.reshape(-1)
    for i in range(0, v.size, block):
        np.multiply(v[i : i + block], w, out=v[i : i + block], casting="unsafe")


def apply_diff(base: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    """base + diff, key by key (keys only in base are kept)."""
    out = dict(base)
    for key, d in diff.items():
        if key not in base:
            raise ValueError(f'DIFF update has params["{key}"] that the global model lacks')
        b = base[key]
        out[key] = (b + d.to(b.dtype)) if _is_torch(b) else (np.asarray(b) + np.asarray(d)).astype(
            np.asarray(b).dtype, copy=False)
    return out
