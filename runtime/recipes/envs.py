"""Where a recipe runs: SimEnv (this process); PocEnv and ProdEnv come with the federation."""

from __future__ import annotations

import abc
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.jobs.errors import ArgError
from runtime.sim.simulator import DEFAULT_WORKSPACE_ROOT, SimulationResult, Simulator

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


class Env(abc.ABC):
    """An environment a recipe can run in."""

    @abc.abstractmethod
    def deploy(self, recipe: "Recipe") -> Run:
        """Export `recipe`'s job and start it; returns its Run."""


class SimRun(Run):
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.result: SimulationResult | None = None

    def get_job_id(self) -> str:
        assert self.sim.runner is not None
        return self.sim.runner.job_id

    def get_status(self) -> str:
        assert self.sim.runner is not None
        return self.sim.runner.status

    def get_result(self, timeout: float | None = None) -> str | None:
        if self.result is None:
            assert self.sim.runner is not None
            self.sim.runner.wait(timeout)
            if not self.sim.runner.done:
                return None
            self.result = self.sim.wait()
        return str(self.result.result_dir)

    def abort(self) -> None:
        self.sim.abort("Run.abort()")


class SimEnv(Env):
    """Run on the simulator in this process (the same engine a federation runs).

    Args:
        num_clients: sites named site-1..site-N (or give `clients`).
        clients: site names.
        num_threads: how many sites execute at once (default: all).
        gpu_config: GPU ids round-robin over sites, e.g. "0,1".
        workspace_root: the run's workspace is `<workspace_root>/<job name>`.
        wait: return from execute() only when the job has ended (default).
    """

    def __init__(
        self,
        num_clients: int | None = None,
        clients: list[str] | None = None,
        num_threads: int | None = None,
        gpu_config: str | None = None,
        workspace_root: str | Path = DEFAULT_WORKSPACE_ROOT,
        wait: bool = True,
    ) -> None:
        if num_clients is None and not clients:
            raise ArgError("num_clients", "a number of sites (or clients=[names])", None)
        self.num_clients = num_clients
        self.clients = clients
        self.num_threads = num_threads
        self.gpu_config = gpu_config
        self.workspace_root = Path(workspace_root)
        self.wait = wait

    def deploy(self, recipe: "Recipe") -> Run:
        workspace = self.workspace_root / recipe.name
        workspace.mkdir(parents=True, exist_ok=True)
        job_dir = recipe.export(Path(tempfile.mkdtemp(prefix="recipe-", dir=workspace)) / recipe.name)
        n = len(self.clients) if self.clients else int(self.num_clients or 0)
        sim = Simulator(job_dir, workspace=workspace, n_clients=None if self.clients else n,
                        clients=self.clients, threads=self.num_threads, gpu=self.gpu_config,
                        max_clients=max(100, n))
        sim.prepare()
        sim.start()
        run = SimRun(sim)
        if self.wait:
            run.get_result()
        return run
