"""Cyclic weight transfer (Chang et al., "Distributed deep learning networks among institutions
for medical imaging", JAMIA 2018): one model relayed from site to site.

Each round the sites train one after another, each starting from the model the previous one
returned; the round's last model is the global model. The order is the sites' (sorted) order,
or shuffled each round (`order="shuffle"`, seeded, so a job gives the same order every run).
A site that fails or times out is skipped with a warning (the next site starts from the last
good model); a round in which fewer than `min_clients` sites succeeded fails the job.
"""

from __future__ import annotations

from typing import Any

from runtime.jobs.errors import ArgError, check_positive_int
from runtime.model import FLModel, ParamsType
from runtime.workflows.aggregators import apply_diff
from runtime.workflows.base import JobFailed, ModelController
from runtime.workflows.persistors import params_from_json
from runtime.workflows.tasks import GroupOutcome


class Cyclic(ModelController):
    """Args:
        num_rounds: passes over the sites.
        order: "fixed" (the sites in name order) or "shuffle" (a new seeded order each round).
        min_clients: sites that must succeed in a round (default: the job's min_clients).
        persistor_id / initial_model: where the first model comes from (as FedAvg's).
        task_name: the task each site runs (default "train").
        timeout: seconds each site may take (default: no limit).
    """

    def __init__(self, num_rounds: int = 5, order: str = "fixed", min_clients: int | None = None,
                 persistor_id: str | None = None, initial_model: dict | None = None,
                 task_name: str = "train", timeout: float | None = None, seed: int = 0) -> None:
        super().__init__(persistor_id=persistor_id, seed=seed)
        self.num_rounds = check_positive_int("num_rounds", num_rounds)
        if order not in ("fixed", "shuffle"):
            raise ArgError("order", '"fixed" or "shuffle"', order)
        if min_clients is not None:
            check_positive_int("min_clients", min_clients)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise ArgError("timeout", "a positive number of seconds", timeout)
        if persistor_id is None and initial_model is None:
            raise ArgError("persistor_id", "the id of a persistor component (or initial_model: "
                           "{name: values}); without either the first site would get an empty "
                           "model", None)
        self.order = order
        self.min_clients = min_clients
        self.initial_params = params_from_json(initial_model, "initial_model") if initial_model else None
        self.task_name = task_name
        self.timeout = timeout

    def load_model(self) -> FLModel:
        if self.persistor_id is None and self.initial_params is not None:
            return FLModel(params=dict(self.initial_params), params_type=ParamsType.FULL)
        return super().load_model()

    def relay_order(self) -> list[str]:
        """This round's order of the sites."""
        sites = sorted(self.sites)
        if self.order == "shuffle":
            self.rng.shuffle(sites)
        return sites

    def run(self) -> None:
        model = self.initial_model()
        need = self.min_clients or self.ctx.job.min_clients
        start = model.current_round + 1 if model.current_round is not None else 0
        for _ in range(start):  # a resumed job: the shuffles of the rounds it already ran
            self.relay_order()
        for r in range(start, self.num_rounds):
            order = self.relay_order()
            self.round_started(r, self.num_rounds, order)
            self.info(f"round {r + 1}: relay order {' -> '.join(order)}")
            done: list[str] = []
            outcome = GroupOutcome()  # the whole relay's, for the round's record
            metrics: dict[str, Any] = {}
            for site in order:
                if self.is_aborted():
                    return
                model.current_round, model.total_rounds = r, self.num_rounds
                try:
                    (result,) = self.send_model_and_wait(self.task_name, model, [site],
                                                         timeout=self.timeout)
                except JobFailed as e:
                    why = e.details.get(site, str(e))
                    if why == "timed out":
                        outcome.timed_out.append(site)
                    else:
                        outcome.failed[site] = why
                    self.warning(f"round {r + 1}: {site} skipped ({e}); the next site starts "
                                 "from the last good model")
                    continue
                if result.params is not None:
                    params = (apply_diff(model.params or {}, result.params)
                              if result.params_type == ParamsType.DIFF else result.params)
                    model = FLModel(params=params, params_type=ParamsType.FULL)
                metrics = result.metrics or metrics
                done.append(site)
                outcome.ok_sites.append(site)
            if len(done) < need:
                raise JobFailed(f"round {r + 1}: {len(done)} of {len(order)} sites trained "
                                f"({', '.join(done) or 'none'}), min_clients={need}",
                                sites=[s for s in order if s not in done])
            model = FLModel(params=model.params, params_type=ParamsType.FULL, metrics=metrics,
                            current_round=r, total_rounds=self.num_rounds)
            self.save_model(model)
            self.ctx.last_outcome = outcome
            self.round_completed(r, metrics)
