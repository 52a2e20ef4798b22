"""SCAFFOLD (Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", ICML 2020), server side, option II.

The server keeps a control variate c shaped like the model (zero at first) and sends it with
every task (`meta["scaffold_c_global"]`). A site corrects each local step by c - c_i, then
returns its model y_i and `meta["scaffold_c_diff"]` = c_i+ - c_i, where (option II)
c_i+ = c_i - c + (x - y_i) / (K * lr) after K local steps of size lr (`runtime.client.
algorithms.ScaffoldHelper` does that part). With S the sites of the round and N all of them:

    x <- x + server_lr * (1/|S|) sum_{i in S} (y_i - x)
    c <- c + (1/N) sum_{i in S} (c_i+ - c_i)

uniform over the sites, as in the paper. c goes into the job's checkpoint every round, so a
job resumed after a server restart goes on with the same control variate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.jobs.errors import ArgError
from runtime.model import FLModel, ParamsType
from runtime.workflows.aggregators import MetricsMean
from runtime.workflows.arrays import as_float64, cast_like
from runtime.workflows.exact_sum import OrderFreeSum
from runtime.workflows.fedavg import FedAvg

C_GLOBAL = "scaffold_c_global"
C_DIFF = "scaffold_c_diff"


def check_server_lr(server_lr: Any) -> float:
    if isinstance(server_lr, bool) or not isinstance(server_lr, (int, float)) or not server_lr > 0 \
            or server_lr == float("inf"):
        raise ArgError("server_lr", "a number > 0 (the global step size)", server_lr)
    return float(server_lr)


class ScaffoldAggregator:
    """Sums y_i - x (from FULL y_i or a DIFF) and c_i+ - c_i over the round's sites."""

    def __init__(self, global_params: dict[str, Any]) -> None:
        self._global64 = {k: as_float64(v) for k, v in global_params.items()}
        self._dy = {k: OrderFreeSum(v.shape) for k, v in self._global64.items()}
        self._dc = {k: OrderFreeSum(v.shape) for k, v in self._global64.items()}
        self._metrics = MetricsMean()
        self.count = 0

    def accept(self, model: FLModel, take: bool = False) -> None:
        site = model.meta.get("site_name", "?")
        params, dc = model.params or {}, model.meta.get(C_DIFF)
        if not isinstance(dc, dict):
            raise ValueError(f'{site} sent no meta["{C_DIFF}"] (its c_i+ - c_i, shaped like the '
                             "params): train with runtime.client.algorithms.ScaffoldHelper")
        for name, values in (("params", params), (f'meta["{C_DIFF}"]', dc)):
            if set(values) != set(self._global64):
                raise ValueError(f"{site} sent {name} {sorted(values)[:5]}..., the global model "
                                 f"has {sorted(self._global64)[:5]}...")
        diff = model.params_type == ParamsType.DIFF
        dy, dcs = {}, {}
        for key, x in self._global64.items():
            y, c = as_float64(params[key]), as_float64(dc[key])
            if y.shape != x.shape or c.shape != x.shape:
                raise ValueError(f'{site}: params["{key}"] or its c_diff is not shaped {x.shape}')
            dy[key], dcs[key] = (y if diff else y - x), c
        for key in self._global64:  # all checked first: a bad result adds nothing
            self._dy[key].add(dy[key])
            self._dc[key].add(dcs[key])
        self._metrics.add(model.metrics, 1.0)
        self.count += 1

    def result(self) -> FLModel:
        if self.count == 0:
            raise ValueError("no results to aggregate")
        return FLModel(params={k: s.mean(self.count) for k, s in self._dy.items()},
                       params_type=ParamsType.DIFF, metrics=self._metrics.result(),
                       meta={"num_sites": self.count,
                             "c_diff_sum": {k: s.total() for k, s in self._dc.items()}})


class Scaffold(FedAvg):
    """FedAvg's loop with SCAFFOLD's server rule (see the module doc).

    Args:
        server_lr: the global step size eta_g (1.0 in the paper's experiments).
        Every FedAvg argument applies but aggregator_id (the rule is SCAFFOLD's own).
    """

    def __init__(self, server_lr: float = 1.0, **fedavg_args: Any) -> None:
        check_server_lr(server_lr)
        if fedavg_args.get("aggregator_id") is not None:
            raise ArgError("aggregator_id", "null: SCAFFOLD aggregates by its own rule",
                           fedavg_args["aggregator_id"])
        super().__init__(**fedavg_args)
        self.server_lr = float(server_lr)
        self.c: dict[str, np.ndarray] | None = None

    def _control(self, params: dict[str, Any]) -> dict[str, np.ndarray]:
        if self.c is None:
            self.c = {k: np.zeros(np.shape(v), dtype=np.float64) for k, v in params.items()}
        return self.c

    def round_aggregator(self, model: FLModel) -> ScaffoldAggregator:
        return ScaffoldAggregator(model.params or {})

    def task_model(self, model: FLModel, current_round: int) -> FLModel:
        params = model.params or {}
        c = self._control(params)
        task = model.copy_meta()
        task.meta[C_GLOBAL] = {k: cast_like(v, params[k]) for k, v in c.items()}
        return task

    def server_update(self, model: FLModel, agg: FLModel) -> dict[str, Any] | None:
        params = model.params or {}
        c = self._control(params)
        n = len(self.sites)  # N: every site of the job, not only this round's
        out = {}
        for key, x in params.items():
            out[key] = cast_like(as_float64(x) + self.server_lr * agg.params[key], x)
            c[key] = c[key] + agg.meta["c_diff_sum"][key] / n
        return out

    def state_to_keep(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(self.c or {}), {"algorithm": "scaffold"}

    def restore_state(self, arrays: dict[str, Any], info: dict[str, Any]) -> None:
        self.c = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        self.info(f"SCAFFOLD: control variate restored from the checkpoint ({len(self.c)} arrays)")


__all__ = ["C_DIFF", "C_GLOBAL", "Scaffold", "ScaffoldAggregator"]
