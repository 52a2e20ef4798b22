"""ModelController: the base a workflow author subclasses by writing `run()`."""

from __future__ import annotations

import random
from typing import Any, Callable

import numpy as np

from runtime.model import FLModel, ParamsType
from runtime.transport.base import TaskResult
from runtime.workflows.context import ControllerContext
from runtime.workflows.tasks import TaskGroup, TaskGroupError


class JobFailed(RuntimeError):
    """Raised by a controller to fail its job; `sites` and `details` say who and why."""

    def __init__(
        self, message: str, sites: list[str] | None = None, details: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.sites = sites or []
        self.details = details or {}


class JobAborted(RuntimeError):
    """The job was aborted while the controller waited."""


class ModelController:
    """Subclass and write `run()`; the runtime calls it once the job's sites are ready.

    ```python
    class MyWorkflow(ModelController):
        def __init__(self, num_rounds: int = 3):
            super().__init__()
            self.num_rounds = num_rounds
        def run(self):
            model = self.load_model()
            for r in range(self.num_rounds):
                results = self.send_model_and_wait("train", model)
                ...
    ```
    """

    def __init__(self, persistor_id: str | None = None, seed: int = 0) -> None:
        self.persistor_id = persistor_id
        self.seed = seed
        self._ctx: ControllerContext | None = None

    # ---- wiring ------------------------------------------------------------------------------

    def bind(self, ctx: ControllerContext) -> None:
        self._ctx = ctx
        self.rng = random.Random(getattr(self, "seed", 0))
        self.logger = ctx.logger

    @property
    def ctx(self) -> ControllerContext:
        if self._ctx is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a job yet")
        return self._ctx

    @property
    def sites(self) -> list[str]:
        """The sites that are ready for this job."""
        return list(self.ctx.sites)

    @property
    def job_id(self) -> str:
        return self.ctx.job_id

    def run(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    # ---- tasks -------------------------------------------------------------------------------

    def send_model_and_wait(
        self,
        task_name: str = "train",
        data: FLModel | None = None,
        targets: list[str] | None = None,
        min_responses: int | None = None,
        timeout: float | None = None,
        callback: Callable[[FLModel], None] | None = None,
        wait_after_min: float | None = None,
    ) -> list[FLModel]:
        """Send `data` as task `task_name` to `targets` (default: every ready site) and wait.

        Returns the sites' result models (`meta["site_name"]` says whose). With `callback`,
        each result is handed to it as it arrives and not kept, and an empty list is returned.
        Raises JobFailed when fewer than `min_responses` (default: all targets) succeed.
        Once `min_responses` succeeded, the round stops waiting for sites whose heartbeats
        stopped (STALE), and with `wait_after_min`, for any site after that many more seconds.
        """
        targets = list(targets) if targets is not None else self.sites
        unknown = [t for t in targets if t not in self.ctx.sites]
        if unknown:
            raise JobFailed(f"task '{task_name}': targets not in this job: {', '.join(unknown)}")
        if not targets:
            raise JobFailed(f"task '{task_name}': no target sites")
        need = len(targets) if min_responses is None else int(min_responses)
        if need > len(targets):
            raise JobFailed(
                f"task '{task_name}': min_responses={need} but only {len(targets)} targets"
            )
        data = data if data is not None else FLModel(params={}, params_type=ParamsType.FULL)

        fmt = getattr(self, "server_expected_format", None)

        def as_model(result: TaskResult) -> FLModel:
            model = result.model or FLModel(params=None)
            model.meta["site_name"] = result.site
            model.meta["client_name"] = result.site
            if fmt is not None and model.params:
                from runtime.wire.convert import convert_params

                model = convert_params(model, fmt)
            return model

        group_cb = (lambda r: callback(as_model(r))) if callback is not None else None
        group = TaskGroup(
            self.ctx.engine, self.job_id, task_name, data, targets, timeout, group_cb
        )
        self.ctx.current_group = group
        group.dispatch()
        try:
            outcome = group.wait(need, self.ctx.abort_event, wait_after_min)
        except TaskGroupError as e:
            details = {s: group.outcome.failed.get(s, "timed out") for s in e.sites}
            raise JobFailed(str(e), sites=e.sites, details=details) from None
        finally:
            self.ctx.current_group = None
        if self.ctx.abort_event.is_set():
            raise JobAborted("job aborted")
        for site, error in sorted(outcome.failed.items()):
            detail = "\n".join("    " + ln for ln in (error or "").rstrip().splitlines()[-8:])
            self.warning(f"task '{task_name}' failed on {site}: {_last_line(error)}\n{detail}")
        for site in outcome.timed_out:
            self.warning(f"task '{task_name}' timed out on {site}")
        self.ctx.last_outcome = outcome
        return [as_model(r) for r in outcome.results]

    def sample_clients(self, num_clients: int | None = None) -> list[str]:
        """A random sample of `num_clients` ready sites (all of them, shuffled, by default)."""
        sites = self.sites
        n = len(sites) if num_clients is None else num_clients
        if n > len(sites):
            raise JobFailed(f"cannot sample {n} sites: only {len(sites)} are ready")
        return sorted(self.rng.sample(sites, n), key=sites.index)

    # ---- model persistence -------------------------------------------------------------------

    def load_model(self) -> FLModel:
        """The initial global model: from the persistor component if one is configured."""
        if self.persistor_id:
            persistor = self.get_component(self.persistor_id)
            return persistor.load_model()
        return FLModel(params={}, params_type=ParamsType.FULL)

    def initial_model(self) -> FLModel:
        """The model a workflow starts from: after a server restart, the global model of the
        last completed round (its `current_round` says which; go on from the next one), else
        `load_model()`."""
        take = getattr(self.ctx, "take_resume_model", None)  # absent on a bare test context
        resumed = take() if take is not None else None
        if resumed is not None:
            self.info(f"resuming from the checkpoint of round {resumed.current_round + 1}")
            return resumed
        return self.load_model()

    def save_state(self, arrays: dict[str, Any], info: dict[str, Any] | None = None,
                   current_round: int | None = None) -> None:
        """Keep what this workflow needs besides the model to go on after a server restart
        (control variates, optimizer moments): `arrays` by name, `info` JSON-compatible. Call it
        before `round_completed(r)` with `current_round=r`: the round's checkpoint takes it, and
        `resume_state()` gives it back on the restarted server."""
        state = FLModel(params={k: np.asarray(v) for k, v in arrays.items()},
                        params_type=ParamsType.FULL, meta=dict(info or {}),
                        current_round=current_round)
        self.ctx.workspace.save_model(state, "workflow_state")

    def resume_state(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(arrays, info) as `save_state` kept them with the checkpoint this job resumes from
        (ask after `initial_model()`), or None for a fresh start."""
        take = getattr(self.ctx, "take_resume_state", None)
        state = take() if take is not None else None
        if state is None:
            return None
        return dict(state.params or {}), dict(state.meta or {})

    def save_model(self, model: FLModel, name: str = "global_model") -> None:
        self.ctx.workspace.save_model(model, name)
        if self.persistor_id:
            saver = getattr(self.get_component(self.persistor_id), "save_model", None)
            if callable(saver):
                saver(model)

    def get_component(self, component_id: str) -> Any:
        return self.ctx.components.get(component_id)

    # ---- rounds and logging ------------------------------------------------------------------

    def round_started(self, current_round: int, total_rounds: int, targets: list[str]) -> None:
        self.ctx.round_started(current_round, total_rounds, targets)

    def round_completed(self, current_round: int, metrics: dict[str, Any] | None = None) -> None:
        self.ctx.round_completed(current_round, metrics or {})

    def is_aborted(self) -> bool:
        return self.ctx.abort_event.is_set()

    def info(self, msg: str) -> None:
        self.ctx.logger.info(msg)

    def warning(self, msg: str) -> None:
        self.ctx.logger.warning(msg)

    def error(self, msg: str) -> None:
        self.ctx.logger.error(msg)


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no message)"


