"""NewtonRaphson: federated logistic regression (or any GLM) with a second-order server step.

Each round the server sends the global weights `w` (params {"w": array of d + 1, intercept
first}) to every site. A site answers with the gradient and Hessian of *its* log-likelihood at
`w`, summed over its samples:

    params  {"gradient": g_k = X_k^T (y_k - p_k),
             "hessian":  H_k = -X_k^T diag(p_k (1 - p_k)) X_k}
    meta    {"NUM_STEPS_CURRENT_ROUND": n_k}
    metrics {"loss": ..., "accuracy": ...}   (of the received w, on the site's data)

The pooled log-likelihood is the sum of the sites' ones, so its gradient and Hessian are the
sums of theirs, and the server takes the Newton-Raphson step of the pooled problem:

    w <- w - damping * (sum_k H_k)^-1 (sum_k g_k)

which is exactly what a centralised fit on the pooled data would do. Sums are folded in as
results arrive (memory O(d^2), whatever the number of sites); the linear system is solved
with `np.linalg.solve`, never an explicit inverse.

With `l2 > 0` the server maximises the ridge-penalised log-likelihood
`sum_k l_k(w) - l2/2 * ||w[1:]||^2` (the intercept w[0] is not penalised): it subtracts
`l2 * w[1:]` from the summed gradient and `l2` from the Hessian's diagonal (but not its [0, 0]
entry). The penalty is applied once, by the server, never by the sites.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from runtime.jobs.errors import ArgError, check_non_negative_number, check_positive_int
from runtime.model import FLModel, MetaKey, ParamsType
from runtime.workflows.aggregators import MetricsMean
from runtime.workflows.exact_sum import OrderFreeSum
from runtime.workflows.base import JobFailed, ModelController
from runtime.workflows.persistors import params_from_json

GRADIENT = "gradient"
HESSIAN = "hessian"
WEIGHTS = "w"


class NewtonRaphsonAggregator:
    """Sums the sites' gradients and Hessians, and averages their metrics weighted by n_k.

    `accept` one result at a time (shapes are checked against `dim`, the length of w); memory
    is one (dim,) and one (dim, dim) float64 array however many sites report.
    """

    def __init__(self, dim: int, weight_key: str = MetaKey.NUM_STEPS_CURRENT_ROUND) -> None:
        self.dim = check_positive_int("dim", dim)
        self.weight_key = weight_key
        self.reset()

    def reset(self) -> None:
        self._gradient = OrderFreeSum((self.dim,))  # the same sums whatever the arrival order
        self._hessian = OrderFreeSum((self.dim, self.dim))
        self._weights: list[float] = []
        self._metrics = MetricsMean()
        self.count = 0
        self.sites: list[str] = []

    def accept(self, model: FLModel) -> None:
        site = (model.meta or {}).get("site_name", "?")
        params = model.params or {}
        missing = [k for k in (GRADIENT, HESSIAN) if k not in params]
        if missing:
            raise ValueError(f"{site} sent no {' or '.join(repr(k) for k in missing)} "
                             f"(got params {sorted(params)})")
        g = _as_float_array(params[GRADIENT], site, GRADIENT)
        h = _as_float_array(params[HESSIAN], site, HESSIAN)
        if g.shape != (self.dim,):
            raise ValueError(f'{site} sent params["{GRADIENT}"] with shape {g.shape}, '
                             f"expected ({self.dim},)")
        if h.shape != (self.dim, self.dim):
            raise ValueError(f'{site} sent params["{HESSIAN}"] with shape {h.shape}, '
                             f"expected ({self.dim}, {self.dim})")
        w = self._weight_of(model, site)
        self._gradient.add(g)
        self._hessian.add(h)
        self._metrics.add(model.metrics, w)
        self._weights.append(w)
        self.count += 1
        self.sites.append(site)

    @property
    def gradient(self) -> np.ndarray:
        return self._gradient.total()

    @property
    def hessian(self) -> np.ndarray:
        return self._hessian.total()

    @property
    def total_weight(self) -> float:
        return math.fsum(self._weights)

    def metrics(self) -> dict[str, float]:
        """The sites' metrics, averaged with weights n_k (metrics of sites with n_k = 0 drop out)."""
        return self._metrics.result()

    def _weight_of(self, model: FLModel, site: str) -> float:
        raw = (model.meta or {}).get(self.weight_key, 1)
        try:
            w = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f'{site}: meta["{self.weight_key}"] must be a number, got {raw!r}') from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f'{site}: meta["{self.weight_key}"] must be a finite number >= 0, '
                             f"got {raw!r}")
        return w


def _as_float_array(value: Any, site: str, key: str) -> np.ndarray:
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f'{site} sent params["{key}"] with non-finite values')
    return arr


def penalised(w: np.ndarray, gradient: np.ndarray, hessian: np.ndarray,
              l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of `loglik(w) - l2/2 ||w[1:]||^2` from those of `loglik` (copies)."""
    g = np.array(gradient, dtype=np.float64)
    h = np.array(hessian, dtype=np.float64)
    if l2:
        g[1:] -= l2 * w[1:]
        idx = np.arange(1, len(w))
        h[idx, idx] -= l2
    return g, h


def newton_step(w: np.ndarray, gradient: np.ndarray, hessian: np.ndarray,
                damping: float = 1.0, l2: float = 0.0) -> np.ndarray:
    """`w - damping * H^-1 g` with the (optionally ridge-penalised) summed gradient and Hessian.

    Raises np.linalg.LinAlgError when the Hessian is singular."""
    w = np.asarray(w, dtype=np.float64)
    g, h = penalised(w, gradient, hessian, l2)
    return w - damping * np.linalg.solve(h, g)


class NewtonRaphson(ModelController):
    """Federated Newton-Raphson for logistic regression (NVFlare's hello-lr workflow).

    Args:
        num_rounds: Newton steps to take (one round each).
        min_clients: results needed for a round to count (default: the job's min_clients).
        num_features: d; the model is w = zeros(d + 1) (intercept first), unless
            `initial_model` or `persistor_id` gives a starting point.
        initial_model: {"w": list of d + 1 numbers}, instead of zeros.
        persistor_id: a component with load_model() giving {"w": array}.
        damping: the step size (1.0: a full Newton step).
        l2: ridge penalty on w[1:] (0: plain maximum likelihood).
        task_name: the task sent to the sites.
        timeout: seconds a round waits for results (default: no limit).
    """

    def __init__(
        self,
        num_rounds: int = 5,
        min_clients: int | None = None,
        num_features: int | None = None,
        initial_model: dict | None = None,
        persistor_id: str | None = None,
        damping: float = 1.0,
        l2: float = 0.0,
        task_name: str = "train",
        timeout: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(persistor_id=persistor_id, seed=seed)
        check_positive_int("num_rounds", num_rounds)
        if min_clients is not None:
            check_positive_int("min_clients", min_clients)
        if num_features is not None:
            check_positive_int("num_features", num_features)
        check_non_negative_number("damping", damping)
        if damping == 0:
            raise ArgError("damping", "a positive number (the Newton step size)", damping)
        check_non_negative_number("l2", l2)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise ArgError("timeout", "a positive number of seconds", timeout)
        if not isinstance(task_name, str) or not task_name:
            raise ArgError("task_name", "a task name", task_name)
        self.initial_params = None
        if initial_model is not None:
            params = params_from_json(initial_model, "initial_model")
            if set(params) != {WEIGHTS} or params[WEIGHTS].ndim != 1 or len(params[WEIGHTS]) < 2:
                raise ArgError("initial_model", '{"w": [intercept, coef_1, ..., coef_d]}',
                               initial_model)
            if num_features is not None and len(params[WEIGHTS]) != num_features + 1:
                raise ArgError("initial_model",
                               f'"w" of num_features + 1 = {num_features + 1} numbers',
                               initial_model)
            self.initial_params = {WEIGHTS: params[WEIGHTS].astype(np.float64)}
        if num_features is None and initial_model is None and persistor_id is None:
            raise ArgError("num_features", "the number of features (or initial_model)", None)
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.num_features = num_features
        self.damping = float(damping)
        self.l2 = float(l2)
        self.task_name = task_name
        self.timeout = timeout

    def load_model(self) -> FLModel:
        if self.initial_params is not None:
            params = dict(self.initial_params)
        elif self.persistor_id is None:
            params = {WEIGHTS: np.zeros(self.num_features + 1, dtype=np.float64)}
        else:
            params = super().load_model().params or {}
        if WEIGHTS not in params:
            raise JobFailed(f'NewtonRaphson: the initial model has no "{WEIGHTS}" '
                            f"(got {sorted(params)})")
        w = np.asarray(params[WEIGHTS], dtype=np.float64).reshape(-1)
        if self.num_features is not None and len(w) != self.num_features + 1:
            raise JobFailed(f'NewtonRaphson: the initial "{WEIGHTS}" has {len(w)} entries, '
                            f"expected num_features + 1 = {self.num_features + 1}")
        return FLModel(params={WEIGHTS: w}, params_type=ParamsType.FULL)

    def run(self) -> None:
        model = self.initial_model()
        w = np.asarray(model.params[WEIGHTS], dtype=np.float64).reshape(-1)
        start = model.current_round + 1 if model.current_round is not None else 0
        aggregator = NewtonRaphsonAggregator(len(w))
        need = self.min_clients or self.ctx.job.min_clients
        self.info(f"NewtonRaphson: {self.num_rounds} rounds over {len(self.sites)} sites, "
                  f"{len(w) - 1} features, damping {self.damping:g}, l2 {self.l2:g}, "
                  f"{need} results needed per round")
        for r in range(start, self.num_rounds):
            targets = self.sites
            if need > len(targets):
                raise JobFailed(f"min_clients={need} but only {len(targets)} sites are ready")
            self.round_started(r, self.num_rounds, targets)
            aggregator.reset()
            sent = FLModel(params={WEIGHTS: w}, params_type=ParamsType.FULL,
                           current_round=r, total_rounds=self.num_rounds)
            self.send_model_and_wait(self.task_name, sent, targets, min_responses=need,
                                     timeout=self.timeout, callback=aggregator.accept)
            if self.is_aborted():
                break
            if aggregator.count == 0:
                raise JobFailed(f"round {r + 1}: no site returned a gradient and Hessian")
            g, h = penalised(w, aggregator.gradient, aggregator.hessian, self.l2)
            try:
                step = np.linalg.solve(h, g)
            except np.linalg.LinAlgError:
                raise JobFailed(
                    f"round {r + 1}: the summed Hessian of {aggregator.count} sites is singular "
                    f"(too few samples, or collinear features): set l2 > 0"
                ) from None
            w = w - self.damping * step
            metrics = aggregator.metrics()
            metrics["gradient_norm"] = float(np.linalg.norm(g))  # at the w sent this round
            self.save_model(FLModel(params={WEIGHTS: w}, params_type=ParamsType.FULL,
                                    metrics=metrics, current_round=r,
                                    total_rounds=self.num_rounds,
                                    meta={"num_sites": aggregator.count,
                                          "num_samples": aggregator.total_weight}))
            self.round_completed(r, metrics)
            if self.is_aborted():
                break
