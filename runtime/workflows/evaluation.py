"""Evaluation workflows, run after training (a job's second workflow):

- `GlobalModelEval`: the final global model goes to every site as a `validate` task; each
  site's metrics land in `<result>/global_eval.json` as {"<site>": {metric: value}}.
- `CrossSiteEval`: every site's own last model (a `submit_model` task) and the global model go
  to every site for validation: an N x (N + 1) matrix in `<result>/cross_site_val.json` as
  {"<model owner or 'global'>": {"<site>": {metric: value}}}.

A site's script tells the tasks apart with `flare.is_train()`, `flare.is_evaluate()` and
`flare.is_submit_model()` (NVFlare's names): it answers `validate` with
`flare.send(FLModel(metrics={...}))` (metrics of the model it received, on its own data) and
`submit_model` with its local model's params. A site that fails or times out is left out of the
matrix with a warning; the job goes on.
"""

from __future__ import annotations

from typing import Any

from runtime.jobs.errors import ArgError
from runtime.model import FLModel, ParamsType
from runtime.workflows.base import JobFailed, ModelController

GLOBAL = "global"
CROSS_SITE_FILE = "cross_site_val.json"
GLOBAL_EVAL_FILE = "global_eval.json"


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise ArgError("timeout", "a positive number of seconds", timeout)


class _Evaluation(ModelController):
    def __init__(self, validate_task: str = "validate", timeout: float | None = None,
                 persistor_id: str | None = None) -> None:
        super().__init__(persistor_id=persistor_id)
        _check_timeout(timeout)
        self.validate_task = validate_task
        self.timeout = timeout

    def global_model(self) -> FLModel:
        """The final global model the job's training saved, else the persistor's."""
        saved = self.ctx.workspace.load_model("global_model")
        if saved is not None and saved.params:
            return FLModel(params=saved.params, params_type=ParamsType.FULL,
                           current_round=saved.current_round, total_rounds=saved.total_rounds)
        if self.persistor_id:
            return self.load_model()
        raise JobFailed("no global model to evaluate: the job saved none (run a training "
                        "workflow first) and no persistor_id is set")

    def validate_everywhere(self, owner: str, model: FLModel) -> dict[str, dict[str, Any]]:
        """{site: metrics} of `model` validated on every ready site."""
        task = model.copy_meta()
        task.meta["model_owner"] = owner
        results = self.send_model_and_wait(self.validate_task, task, self.sites, min_responses=0,
                                           timeout=self.timeout)
        return {r.meta["site_name"]: dict(r.metrics or {}) for r in results}


class GlobalModelEval(_Evaluation):
    """The final global model validated on every site (see the module doc)."""

    def run(self) -> None:
        row = self.validate_everywhere(GLOBAL, self.global_model())
        self.ctx.workspace.save_json(GLOBAL_EVAL_FILE, dict(sorted(row.items())))
        self.info(f"global model evaluated on {len(row)} of {len(self.sites)} sites")


class CrossSiteEval(_Evaluation):
    """Every site's model and the global model, each validated on every site (see the module
    doc). `submit_task` is the task that asks a site for its model."""

    def __init__(self, submit_task: str = "submit_model", include_global: bool = True,
                 **args: Any) -> None:
        super().__init__(**args)
        if not isinstance(include_global, bool):
            raise ArgError("include_global", "true or false", include_global)
        self.submit_task = submit_task
        self.include_global = include_global

    def run(self) -> None:
        models: dict[str, FLModel] = {}
        if self.include_global:
            models[GLOBAL] = self.global_model()
        submitted = self.send_model_and_wait(self.submit_task, FLModel(params={}), self.sites,
                                             min_responses=0, timeout=self.timeout)
        for result in sorted(submitted, key=lambda m: m.meta["site_name"]):
            if result.params:
                models[result.meta["site_name"]] = FLModel(params=result.params,
                                                           params_type=ParamsType.FULL)
        missing = sorted(set(self.sites) - set(models))
        if missing:
            self.warning(f"cross-site evaluation without the models of {', '.join(missing)} "
                         "(they sent none)")
        matrix: dict[str, dict[str, dict[str, Any]]] = {}
        for owner, model in models.items():
            if self.is_aborted():
                return
            matrix[owner] = dict(sorted(self.validate_everywhere(owner, model).items()))
        self.ctx.workspace.save_json(CROSS_SITE_FILE, matrix)
        self.info(f"cross-site evaluation: {len(matrix)} models x {len(self.sites)} sites")
