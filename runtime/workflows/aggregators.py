"""Aggregators that fold site results in as they arrive, so memory stays O(model)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from runtime.model import FLModel, MetaKey, ParamsType
from runtime.workflows.exact_sum import TorchOrderFreeSum, order_free_sum


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


class MetricsMean:
    """The weighted mean of sites' numeric metrics, key by key (weight-0 sites drop out);
    the same to the last bit whatever order the sites report in (exactly rounded sums)."""

    def __init__(self) -> None:
        self._terms: dict[str, list[float]] = {}
        self._weights: dict[str, list[float]] = {}

    def add(self, metrics: dict[str, Any] | None, weight: float) -> None:
        for key, value in (metrics or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._terms.setdefault(key, []).append(weight * float(value))
                self._weights.setdefault(key, []).append(weight)

    def result(self) -> dict[str, float]:
        out = {}
        for key, terms in self._terms.items():
            total = math.fsum(self._weights[key])
            if total > 0:
                out[key] = math.fsum(terms) / total
        return out


class WeightedAggregator:
    """Weighted mean of params and numeric metrics, one result at a time.

    Weight = `meta["NUM_STEPS_CURRENT_ROUND"]` (1 if absent). Params are summed in float64
    double-doubles (runtime.workflows.exact_sum), so the mean is the same bit for bit whatever
    order the results arrive in, and cast back to each param's dtype (integers rounded).
    Memory: two float64 arrays per param, whatever the number of sites.
    """

    def __init__(self, weight_key: str = MetaKey.NUM_STEPS_CURRENT_ROUND) -> None:
        self.weight_key = weight_key
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, Any] = {}
        self._dtypes: dict[str, Any] = {}
        self._weights: list[float] = []
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
        """Add a site's result; `model` is never modified. (`take`, for callers that drop the
        result after, is accepted for compatibility: nothing is reused from it.)"""
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
            values = {key: self._checked(key, value, site) for key, value in model.params.items()}
            for key, value in values.items():  # all checked first: a bad result adds nothing
                if key not in self._sums:
                    self._dtypes[key] = value.dtype
                    self._sums[key] = order_free_sum(value)
                self._sums[key].add(value, w)
        self._metrics.add(model.metrics, w)
        self._weights.append(w)
        self.count += 1
        self.sites.append(site)

    def _checked(self, key: str, value: Any, site: str) -> Any:
        if not _is_torch(value):
            value = np.asarray(value)
            if value.dtype.kind not in "biuf":
                raise ValueError(f'{site} sent params["{key}"] of dtype {value.dtype}: '
                                 "only integer and real floating params are averaged")
        acc = self._sums.get(key)
        if acc is not None and tuple(acc.hi.shape) != tuple(value.shape):
            raise ValueError(f'{site} sent params["{key}"] with shape {tuple(value.shape)}, '
                             f"expected {tuple(acc.hi.shape)}")
        return value

    def result(self) -> FLModel:
        """The weighted mean (params, metrics) of what was accepted."""
        if self.count == 0:
            raise ValueError("no results to aggregate")
        total = math.fsum(self._weights)
        params = None
        if self._sums:
            if total <= 0:
                raise ValueError("the sum of weights is 0: every site reported 0 steps")
            params = {}
            for key, acc in self._sums.items():
                dtype = self._dtypes[key]
                if isinstance(acc, TorchOrderFreeSum):
                    mean = acc.mean(total)
                    params[key] = mean.round().to(dtype) if not dtype.is_floating_point else mean.to(dtype)
                elif np.dtype(dtype).kind in "iub":
                    params[key] = np.rint(acc.mean(total)).astype(dtype)
                else:
                    params[key] = acc.mean(total, dtype)  # written in blocks: no float64 copy
        metrics = self._metrics.result()
        return FLModel(params=params, params_type=self._params_type, metrics=metrics,
                       meta={"num_sites": self.count, "total_weight": total})


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
