"""Robust aggregation: rules that a few sites sending arbitrary updates cannot drag far.

Aggregator components for every workflow of the FedAvg family (FedAvg, FedProx, FedOpt; set
`aggregator_id`, or a recipe's `aggregator="median" | "trimmed_mean" | "krum"`):

- `MedianAggregator`: the coordinate-wise median (Yin et al., "Byzantine-Robust Distributed
  Learning: Towards Optimal Statistical Rates", ICML 2018).
- `TrimmedMeanAggregator`: per coordinate, drop the `trim_fraction` largest and smallest values,
  average the rest (the same paper's trimmed mean).
- `KrumAggregator`: Krum / multi-Krum (Blanchard et al., "Machine Learning with Adversaries:
  Byzantine Tolerant Gradient Descent", NeurIPS 2017): each update is scored by the sum of its
  squared distances to its n - f - 2 nearest others (f = `num_byzantine`); the `multi` best
  scored are averaged (1: Krum itself). Needs n > 2f + 2.

Unlike the weighted mean, none of these can fold results in as they arrive: each keeps every
site's update until the round ends (memory O(sites x model)). They are unweighted, as in the
papers, and computed in float64 over the sites in name order, so the model does not depend
on the order results arrive in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from runtime.jobs.errors import ArgError, check_positive_int
from runtime.model import FLModel
from runtime.workflows.aggregators import MetricsMean
from runtime.workflows.arrays import as_float64, cast_like


class _KeepAll:
    """Keeps each site's params (float64) to aggregate them all at the end of the round."""

    name = "robust"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._updates: dict[str, dict[str, np.ndarray]] = {}
        self._like: dict[str, Any] = {}
        self._params_type: Any = None
        self._metrics = MetricsMean()
        self.count = 0

    def accept(self, model: FLModel, take: bool = False) -> None:
        site = str(model.meta.get("site_name", f"site#{self.count}"))
        params = model.params or {}
        if self._params_type is None:
            self._params_type = model.params_type
        elif model.params_type != self._params_type:
            raise ValueError(f"{site} sent {model.params_type} params but others sent {self._params_type}")
        if self._like and set(params) != set(self._like):
            raise ValueError(f"{site} sent params {sorted(params)[:5]}..., others sent "
                             f"{sorted(self._like)[:5]}...")
        values = {}
        for key, v in params.items():
            a = as_float64(v)
            if key in self._like and a.shape != np.shape(self._like[key]):
                raise ValueError(f'{site} sent params["{key}"] with shape {a.shape}, expected '
                                 f"{np.shape(self._like[key])}")
            values[key] = a
        if not self._like:
            self._like = dict(params)
        self._updates[site] = values
        self._metrics.add(model.metrics, 1.0)
        self.count += 1

    def _stacked(self) -> tuple[list[str], dict[str, np.ndarray]]:
        if not self._updates:
            raise ValueError("no results to aggregate")
        sites = sorted(self._updates)
        return sites, {k: np.stack([self._updates[s][k] for s in sites]) for k in self._like}

    def _model(self, params64: dict[str, np.ndarray], **meta: Any) -> FLModel:
        return FLModel(params={k: cast_like(v, self._like[k]) for k, v in params64.items()},
                       params_type=self._params_type, metrics=self._metrics.result(),
                       meta={"num_sites": self.count, "rule": self.name, **meta})


class MedianAggregator(_KeepAll):
    """The coordinate-wise median of the sites' params (see the module doc)."""

    name = "median"

    def result(self) -> FLModel:
        _, stacks = self._stacked()
        return self._model({k: np.median(v, axis=0) for k, v in stacks.items()})


class TrimmedMeanAggregator(_KeepAll):
    """Per coordinate, the mean of the values left after dropping floor(trim_fraction * n) of
    the largest and as many of the smallest (see the module doc)."""

    name = "trimmed_mean"

    def __init__(self, trim_fraction: float = 0.1) -> None:
        if isinstance(trim_fraction, bool) or not isinstance(trim_fraction, (int, float)) \
                or not 0 <= trim_fraction < 0.5:
            raise ArgError("trim_fraction", "a number >= 0 and < 0.5 (dropped from each end)",
                           trim_fraction)
        self.trim_fraction = float(trim_fraction)
        super().__init__()

    def result(self) -> FLModel:
        sites, stacks = self._stacked()
        n = len(sites)
        k = int(math.floor(self.trim_fraction * n))
        out = {}
        for key, v in stacks.items():
            kept = np.sort(v, axis=0)[k:n - k]
            out[key] = kept.mean(axis=0)
        return self._model(out, trimmed_each_end=k)


class KrumAggregator(_KeepAll):
    """Krum, or multi-Krum with `multi` > 1 (see the module doc)."""

    name = "krum"

    def __init__(self, num_byzantine: int = 1, multi: int = 1) -> None:
        if isinstance(num_byzantine, bool) or not isinstance(num_byzantine, int) or num_byzantine < 0:
            raise ArgError("num_byzantine", "a whole number >= 0 (the sites that may lie)", num_byzantine)
        self.num_byzantine = num_byzantine
        self.multi = check_positive_int("multi", multi)
        super().__init__()

    def result(self) -> FLModel:
        sites, stacks = self._stacked()
        n, f = len(sites), self.num_byzantine
        if n <= 2 * f + 2:
            raise ValueError(f"Krum with num_byzantine={f} needs more than {2 * f + 2} results, "
                             f"got {n}")
        flat = np.concatenate([v.reshape(n, -1) for v in stacks.values()], axis=1)
        sq = np.sum(flat * flat, axis=1)
        dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0)
        closest = n - f - 2
        scores = [math.fsum(np.sort(np.delete(dist[i], i))[:closest]) for i in range(n)]
        order = sorted(range(n), key=lambda i: (scores[i], sites[i]))[:min(self.multi, n)]
        chosen = [sites[i] for i in order]
        return self._model({k: v[order].mean(axis=0) for k, v in stacks.items()}, chosen=chosen)


RULES = {"median": MedianAggregator, "trimmed_mean": TrimmedMeanAggregator, "krum": KrumAggregator}
