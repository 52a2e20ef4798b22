"""Where a recipe runs, and what a run answers: `recipe.execute(env)` returns a Run. The
environments: SimEnv (runtime.recipes.sim_env: the simulator, in this process), PocEnv (a
running POC federation, or any server's admin port) and ProdEnv (a provisioned federation,
through an admin startup kit: mutual TLS, the admin's rights), both in runtime.recipes.poc_env.
SimRun and PocRun answer the same questions (job id, status, wait, result folder, last round's
metrics, logs, abort)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.recipes.base import Recipe


class Run:
    """A submitted job: its id, its status, where its results are, and a way to stop it."""

    def get_job_id(self) -> str:
        raise NotImplementedError

    def get_status(self) -> str:
        raise NotImplementedError

    def get_result(self, timeout: float | None = None) -> str | None:
        """The result folder (global model, metrics, TensorBoard files) once the job ended;
        None if it has not ended within `timeout` seconds."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job has ended (at most `timeout` seconds); returns its status."""
        self.get_result(timeout)
        return self.get_status()

    def get_metrics(self) -> dict[str, Any]:
        """The metrics of the last completed round ({} before the first one)."""
        raise NotImplementedError

    def get_log(self, site: str | None = None) -> str:
        """The job's server log, or `site`'s log of the job."""
        raise NotImplementedError


class EnvError(RuntimeError):
    """An environment cannot run the recipe (no POC, server not answering, too few sites);
    the message says what to do."""


class Env(abc.ABC):
    """An environment a recipe can run in."""

    @abc.abstractmethod
    def deploy(self, recipe: "Recipe") -> Run:
        """Export `recipe`'s job and start it; returns its Run."""
