"""FedNova (Wang et al., "Tackling the Objective Inconsistency Problem in Heterogeneous Federated
Optimization", NeurIPS 2020): normalized averaging.

Sites that take different numbers of local steps pull FedAvg towards the optimum of the sites
that step most. FedNova divides each site's change by its number of steps before averaging:

    d_i = (w_global - w_i) / a_i          a_i = tau_i, the site's local steps (plain SGD)
    tau_eff = sum_i p_i a_i
    w <- w_global - tau_eff * sum_i p_i d_i

A site reports tau_i as `meta["NUM_STEPS_CURRENT_ROUND"]`; with momentum SGD it may report its
own `meta["fednova_a_i"]` (the paper's ||a_i||_1) instead. p_i is uniform unless the sites
send `meta["fednova_weight"]` (e.g. their sample counts), then proportional to it. The sums are
folded in as results arrive (memory O(model)) and exactly rounded, so the model is the same
bit for bit whatever order the sites answer in.
"""

from __future__ import annotations

import math
from typing import Any

from runtime.model import FLModel, MetaKey, ParamsType
from runtime.workflows.aggregators import MetricsMean
from runtime.workflows.arrays import as_float64, cast_like
from runtime.workflows.exact_sum import OrderFreeSum
from runtime.workflows.fedavg import FedAvg

A_KEY = "fednova_a_i"
WEIGHT_KEY = "fednova_weight"


def _positive(model: FLModel, key: str, site: str) -> float:
    raw = model.meta.get(key)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f'{site} sent meta["{key}"] = {raw!r}; FedNova needs a number > 0')
    return value


class FedNovaAggregator:
    """Folds in w_i (FULL) or w_i - w_global (DIFF) with its a_i and p_i; `result()` is the new
    global model (FULL)."""

    def __init__(self, global_params: dict[str, Any]) -> None:
        self.global_params = global_params
        self._global64 = {k: as_float64(v) for k, v in global_params.items()}
        self._sums = {k: OrderFreeSum(v.shape) for k, v in self._global64.items()}
        self._weights: list[float] = []
        self._weighted_a: list[float] = []
        self._metrics = MetricsMean()
        self._weighted: bool | None = None  # do sites send fednova_weight? all or none
        self.count = 0

    def reset(self) -> None:
        self.__init__(self.global_params)

    def accept(self, model: FLModel, take: bool = False) -> None:
        site = model.meta.get("site_name", "?")
        a_i = _positive(model, A_KEY if A_KEY in model.meta else MetaKey.NUM_STEPS_CURRENT_ROUND, site)
        weighted = WEIGHT_KEY in model.meta
        if self._weighted is None:
            self._weighted = weighted
        elif weighted != self._weighted:
            raise ValueError(f'{site} {"sent" if weighted else "did not send"} meta["{WEIGHT_KEY}"]; '
                             "either every site sends it or none does")
        p_i = _positive(model, WEIGHT_KEY, site) if weighted else 1.0
        params = model.params or {}
        if set(params) != set(self._global64):
            raise ValueError(f"{site} sent params {sorted(params)[:5]}..., the global model has "
                             f"{sorted(self._global64)[:5]}...")
        diff = model.params_type == ParamsType.DIFF
        steps = {}
        for key, g in self._global64.items():
            w = as_float64(params[key])
            if w.shape != g.shape:
                raise ValueError(f'{site} sent params["{key}"] with shape {w.shape}, expected {g.shape}')
            steps[key] = (-w if diff else g - w) / a_i  # d_i (w_i - w_global = w for DIFF)
        for key, d in steps.items():  # all checked first: a bad result adds nothing
            self._sums[key].add(d, p_i)
        self._weights.append(p_i)
        self._weighted_a.append(p_i * a_i)
        self._metrics.add(model.metrics, p_i)
        self.count += 1

    def result(self) -> FLModel:
        if self.count == 0:
            raise ValueError("no results to aggregate")
        total = math.fsum(self._weights)
        tau_eff = math.fsum(self._weighted_a) / total
        params = {}
        for key, g in self._global64.items():
            mean_d = self._sums[key].mean(total)
            params[key] = cast_like(g - tau_eff * mean_d, self.global_params[key])
        return FLModel(params=params, params_type=ParamsType.FULL, metrics=self._metrics.result(),
                       meta={"num_sites": self.count, "tau_eff": tau_eff})


class FedNova(FedAvg):
    """FedAvg with FedNova's normalized averaging (see the module doc); every FedAvg argument
    applies but aggregator_id (the rule is FedNova's own)."""

    def __init__(self, **fedavg_args: Any) -> None:
        if fedavg_args.get("aggregator_id") is not None:
            from runtime.jobs.errors import ArgError

            raise ArgError("aggregator_id", "null: FedNova aggregates by its own rule",
                           fedavg_args["aggregator_id"])
        super().__init__(**fedavg_args)

    def round_aggregator(self, model: FLModel) -> FedNovaAggregator:
        return FedNovaAggregator(model.params or {})
