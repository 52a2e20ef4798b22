"""FedAvg: sample sites, send the global model, fold results in as they arrive, repeat."""

from __future__ import annotations

import operator
import re
from typing import Any

from runtime.jobs.errors import ArgError, check_positive_int
from runtime.model import FLModel, ParamsType
from runtime.workflows.aggregators import WeightedAggregator, apply_diff
from runtime.workflows.base import JobFailed, ModelController
from runtime.workflows.persistors import params_from_json

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
        "==": operator.eq}
_COND = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*(>=|<=|==|>|<)\s*(-?[\d.]+(?:e-?\d+)?)\s*$")


def parse_stop_cond(text: str) -> tuple[str, str, float]:
    m = _COND.match(text or "")
    if not m:
        raise ArgError("stop_cond", 'a condition like "accuracy >= 0.9"', text)
    return m.group(1), m.group(2), float(m.group(3))


class FedAvg(ModelController):
    """Federated averaging (McMahan et al.) with in-time aggregation.

    Args:
        num_rounds: rounds to run.
        min_clients: results needed for a round to count (default: the job's min_clients).
        num_clients: sites sampled each round (default: every ready site).
        initial_model: the starting params as {name: nested list}, when no persistor is set.
        persistor_id: a component with load_model()/save_model() for the global model.
        aggregator_id: a component with reset()/accept(FLModel)/result() (default: weighted mean
            by meta["NUM_STEPS_CURRENT_ROUND"]).
        stop_cond: stop early when the round's aggregated metric meets it, e.g. "accuracy >= 0.9".
        key_metric: metric whose best value selects the model saved as best_global_model.
        key_metric_mode: "max" (default) or "min".
        timeout: seconds a round waits for results (default: no limit).
        wait_time_after_min_received: once min_clients results are in, seconds to wait for the
            others before the round goes on without them (default: wait for every site that
            is still CONNECTED; a site whose heartbeats stopped, STALE, is not waited for).
        server_expected_format: "numpy" keeps the global model as numpy arrays whatever the
            sites send (a server without torch), "torch" as tensors; null keeps what comes.
    """

    def __init__(
        self,
        num_rounds: int = 5,
        min_clients: int | None = None,
        num_clients: int | None = None,
        initial_model: dict | None = None,
        persistor_id: str | None = None,
        aggregator_id: str | None = None,
        task_name: str = "train",
        stop_cond: str | None = None,
        key_metric: str | None = None,
        key_metric_mode: str = "max",
        timeout: float | None = None,
        wait_time_after_min_received: float | None = None,
        seed: int = 0,
        server_expected_format: str | None = None,
    ) -> None:
        super().__init__(persistor_id=persistor_id, seed=seed)
        if server_expected_format not in (None, "numpy", "torch"):
            raise ArgError("server_expected_format", '"numpy", "torch" or null', server_expected_format)
        self.server_expected_format = server_expected_format
        check_positive_int("num_rounds", num_rounds)
        if min_clients is not None:
            check_positive_int("min_clients", min_clients)
        if num_clients is not None:
            check_positive_int("num_clients", num_clients)
            if min_clients is not None and min_clients > num_clients:
                raise ArgError("min_clients", f"at most num_clients ({num_clients})", min_clients)
        if key_metric_mode not in ("max", "min"):
            raise ArgError("key_metric_mode", '"max" or "min"', key_metric_mode)
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ArgError("timeout", "a positive number of seconds", timeout)
        w = wait_time_after_min_received
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0):
            raise ArgError("wait_time_after_min_received", "a number of seconds >= 0", w)
        self.wait_after_min = w
        if persistor_id is None and initial_model is None:
            raise ArgError("persistor_id", "the id of a persistor component (or initial_model: "
                           "{name: values}); without either the sites would get an empty model",
                           None)
        self.stop = parse_stop_cond(stop_cond) if stop_cond else None
        self.initial_params = params_from_json(initial_model, "initial_model") if initial_model else None
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.num_clients = num_clients
        self.aggregator_id = aggregator_id
        self.task_name = task_name
        self.key_metric = key_metric
        self.key_metric_mode = key_metric_mode
        self.timeout = timeout
        self.best_metric: float | None = None

    def load_model(self) -> FLModel:
        if self.persistor_id is None and self.initial_params is not None:
            return FLModel(params=dict(self.initial_params), params_type=ParamsType.FULL)
        return super().load_model()

    def run(self) -> None:
        model = self.initial_model()
        state = self.resume_state()
        if state is not None:
            self.restore_state(*state)
        need = self.min_clients or self.ctx.job.min_clients
        self.info(f"{type(self).__name__}: {self.num_rounds} rounds over {len(self.sites)} sites, "
                  f"{need} results needed per round")
        start = model.current_round + 1 if model.current_round is not None else 0
        for r in range(start, self.num_rounds):
            targets = self.sample_clients(self.num_clients)
            if need > len(targets):
                raise JobFailed(f"min_clients={need} but only {len(targets)} sites are ready")
            self.round_started(r, self.num_rounds, targets)
            model.current_round, model.total_rounds = r, self.num_rounds
            aggregator = self.round_aggregator(model)
            self.send_model_and_wait(
                self.task_name, self.task_model(model, r), targets, min_responses=need,
                timeout=self.timeout, callback=_taking(aggregator), wait_after_min=self.wait_after_min,
            )
            agg = aggregator.result()
            metrics = agg.metrics or {}
            self._track_best(model, metrics, r)
            params = self.server_update(model, agg)
            model = FLModel(params=params, params_type=ParamsType.FULL, metrics=metrics,
                            current_round=r, total_rounds=self.num_rounds)
            self.save_model(model)
            arrays, info = self.state_to_keep()
            if arrays or info:
                self.save_state(arrays, info, current_round=r)
            self.round_completed(r, metrics)
            if self.stop and self._met(metrics):
                self.info(f"stop condition {self.stop[0]} {self.stop[1]} {self.stop[2]:g} met "
                          f"in round {r + 1}: stopping early")
                break
            if self.is_aborted():
                break

    # ---- what an algorithm of the FedAvg family changes ----------------------------------------

    def round_aggregator(self, model: FLModel) -> Any:
        """The aggregator of this round, reset (the global model it starts from is `model`)."""
        if getattr(self, "_aggregator", None) is None:
            self._aggregator = (self.get_component(self.aggregator_id) if self.aggregator_id
                                else WeightedAggregator())
        self._aggregator.reset()
        return self._aggregator

    def task_model(self, model: FLModel, current_round: int) -> FLModel:
        """What the sites get this round (FedProx adds its mu, SCAFFOLD the control variate)."""
        return model

    def server_update(self, model: FLModel, agg: FLModel) -> dict[str, Any] | None:
        """The new global params from the current model and the aggregate of the results."""
        if agg.params is None:
            return model.params
        return apply_diff(model.params or {}, agg.params) if agg.params_type == ParamsType.DIFF else agg.params

    def state_to_keep(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(arrays, info) that must survive a server restart with the round's checkpoint."""
        return {}, {}

    def restore_state(self, arrays: dict[str, Any], info: dict[str, Any]) -> None:
        """Take back what `state_to_keep` kept (a job resumed after a server restart)."""

    def _met(self, metrics: dict[str, Any]) -> bool:
        key, op, value = self.stop
        return key in metrics and _OPS[op](metrics[key], value)

    def _track_best(self, sent: FLModel, metrics: dict[str, Any], r: int) -> None:
        """Sites report metrics of the model they received, so a good metric crowns `sent`."""
        if not self.key_metric or self.key_metric not in metrics:
            return
        value = float(metrics[self.key_metric])
        better = (self.best_metric is None
                  or (value > self.best_metric if self.key_metric_mode == "max" else value < self.best_metric))
        if better and sent.params is not None:
            self.best_metric = value
            best = FLModel(params=sent.params, params_type=ParamsType.FULL,
                           metrics={self.key_metric: value}, current_round=r,
                           total_rounds=self.num_rounds)
            self.ctx.workspace.save_model(best, "best_global_model")
            self.info(f"new best {self.key_metric}={value:g} (round {r + 1})")


def _taking(aggregator: Any):
    """The aggregator's accept, told it may reuse each result's arrays when it can (results
    handed to a callback are not kept by anyone else)."""
    import inspect

    try:
        takes = "take" in inspect.signature(aggregator.accept).parameters
    except (TypeError, ValueError):
        takes = False
    return (lambda m: aggregator.accept(m, take=True)) if takes else aggregator.accept
