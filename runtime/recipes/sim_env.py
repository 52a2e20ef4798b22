"""SimEnv: a recipe's job on the simulator, in this process; SimRun answers for it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime import paths
from runtime.jobs.errors import ArgError
from runtime.recipes.envs import Env, Run
from runtime.sim.simulator import SimulationResult, Simulator

if TYPE_CHECKING:
    from runtime.recipes.base import Recipe


class SimRun(Run):
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.result: SimulationResult | None = None

    def get_job_id(self) -> str:
        assert self.sim.job_id is not None, "the simulation was not started"
        return self.sim.job_id

    def get_status(self) -> str:
        if self.sim.runner is not None:
            return self.sim.runner.status
        return self.sim.manager.store.get(self.get_job_id()).status

    def get_result(self, timeout: float | None = None) -> str | None:
        if self.result is None:
            if self.sim.runner is not None:
                self.sim.runner.wait(timeout)
            if not self.sim.done:
                return None
            self.result = self.sim.wait()
        return str(self.result.result_dir)

    def abort(self) -> None:
        self.sim.abort("Run.abort()")

    def _job_dir(self) -> Path:
        return self.sim.workspace / "server" / "jobs" / self.get_job_id()

    def get_metrics(self) -> dict[str, Any]:
        if self.result is not None:
            return dict(self.result.metrics)
        rounds = sorted((self._job_dir() / "rounds").glob("round_*.json"))
        return json.loads(rounds[-1].read_text()).get("metrics", {}) if rounds else {}

    def get_log(self, site: str | None = None) -> str:
        logs = self._job_dir() / "logs"
        path = logs / ("server.log" if site is None else f"{site}.log")
        if site is not None and not path.is_file() and self.result is not None:
            path = self.result.site_log(site)
        if not path.is_file():
            raise FileNotFoundError(f"job {self.get_job_id()[:8]} has no log from "
                                    f"{site or 'the server'} ({path})")
        return path.read_text(encoding="utf-8", errors="replace")


class SimEnv(Env):
    """Run on the simulator in this process (the same engine a federation runs).

    Args:
        num_clients: sites named site-1..site-N (or give `clients`).
        clients: site names.
        num_threads: how many sites execute at once (default: all); with processes, how many
            worker processes.
        gpu_config: GPU ids round-robin over sites, e.g. "0,1" (implies processes).
        processes: run the sites in worker processes over gRPC (`flshell sim --processes`).
        workspace_root: the run's workspace is `<workspace_root>/<job name>` (default
            `$FLSHELL_HOME/simulation`, see runtime.paths).
        wait: return from execute() only when the job has ended (default).
    """

    def __init__(
        self,
        num_clients: int | None = None,
        clients: list[str] | None = None,
        num_threads: int | None = None,
        gpu_config: str | None = None,
        workspace_root: str | Path | None = None,
        wait: bool = True,
        processes: bool = False,
    ) -> None:
        if num_clients is None and not clients:
            raise ArgError("num_clients", "a number of sites (or clients=[names])", None)
        self.num_clients = num_clients
        self.clients = clients
        self.num_threads = num_threads
        self.gpu_config = gpu_config
        self.processes = processes
        self.workspace_root = Path(workspace_root or paths.default("simulation"))
        self.wait = wait

    def deploy(self, recipe: "Recipe") -> Run:
        workspace = self.workspace_root / recipe.name
        workspace.mkdir(parents=True, exist_ok=True)
        job_dir = recipe.export(Path(tempfile.mkdtemp(prefix="recipe-", dir=workspace)) / recipe.name)
        n = len(self.clients) if self.clients else int(self.num_clients or 0)
        sim = Simulator(job_dir, workspace=workspace, n_clients=None if self.clients else n,
                        clients=self.clients, threads=self.num_threads, gpu=self.gpu_config,
                        max_clients=max(100, n), processes=self.processes)
        sim.prepare()
        sim.start()
        run = SimRun(sim)
        if self.wait:
            run.get_result()
        return run
