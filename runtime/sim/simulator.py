"""The simulator: a federation's server (`FederationServer`) and N sites in this process, over
the in-process transport, or (`processes=True`, implied by GPUs) in worker processes that reach
the server over gRPC.

It is not a second implementation: the job is submitted to the server's job store, scheduled,
deployed (the sites download it), run and recorded by exactly the code a federation uses; only
the transport, and where the sites run, differ.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from runtime import paths
from runtime.client.agent import SiteAgent, SitePump
from runtime.client.apps import DownloadedApps, SharedApps
from runtime.client.sitelog import LogSink
from runtime.federation.server import FederationServer, HoldsServer
from runtime.jobs import ComponentBuilder, Job, JobError, app_key, custom_imports, load_job, unregister
from runtime.jobs.errors import ArgError, names, render
from runtime.server.job_runner import JobRunner, build_server_app
from runtime.server.job_state import JobStatus
from runtime.server.sites import SiteStatus
from runtime.sim.results import SimulationResult, site_failures
from runtime.transport.inproc import InProcTransport



class SimUsageError(ValueError):
    """A bad simulator argument (site count, names, GPU list...)."""


def parse_gpus(text: str | None) -> list[str]:
    """'0,1' -> ['0', '1']; '[0,1],[2,3]' -> ['0,1', '2,3'] (one group per worker)."""
    if not text:
        return []
    text = text.replace(" ", "")
    if "[" in text:
        groups = re.findall(r"\[([0-9,]+)\]", text)
        if not groups or re.sub(r"\[[0-9,]+\],?", "", text):
            raise SimUsageError(f"-gpu {text}: expected ids like 0,1 or groups like [0,1],[2,3]")
        return [",".join(g for g in grp.split(",") if g) for grp in groups]
    ids = text.split(",")
    if not all(i.isdigit() for i in ids):
        raise SimUsageError(f"-gpu {text}: expected comma-separated GPU ids like 0,1")
    return ids


def format_gpus(groups: list[str]) -> str:
    """['0', '1'] -> '0,1'; ['0,1', '2,3'] -> '[0,1],[2,3]': as -gpu takes them."""
    if any("," in g for g in groups):
        return ",".join(f"[{g}]" for g in groups)
    return ",".join(groups)


def check_gpus(groups: list[str]) -> str | None:
    """Refuse GPU ids this host does not have (when NVML can tell); None if all is well, else a
    note for the user: no GPU visible here, so the sites will train on the CPU."""
    from runtime.monitor import gpu_load

    present = {int(g["index"]) for g in gpu_load()}
    if not present:
        return (f"-gpu {format_gpus(groups)}: no GPU visible on this host (NVML); each worker "
                "still gets its CUDA_VISIBLE_DEVICES, and the scripts run on the CPU")
    wanted = {int(i) for grp in groups for i in grp.split(",")}
    missing = sorted(wanted - present)
    if missing:
        raise SimUsageError(f"-gpu: this host has no GPU {', '.join(map(str, missing))} "
                            f"(it has {', '.join(map(str, sorted(present)))})")
    return None


def resolve_sites(job: Job, n_clients: int | None, clients: list[str] | None) -> list[str]:
    """-c names first, else -n (site-1..site-N), else the deploy_map's names, else 2 sites."""
    if clients:
        names = [c.strip() for c in clients if c.strip()]
        dupes = sorted({c for c in names if names.count(c) > 1})
        if dupes:
            raise SimUsageError(f"-c: duplicate site names: {', '.join(dupes)}")
        bad = [c for c in names if not re.fullmatch(r"[A-Za-z0-9_.@-]+", c) or c == "server"]
        if bad:
            raise SimUsageError(f"-c: invalid site names: {', '.join(bad)} (letters, digits, _ . @ -)")
        return names
    if n_clients is not None:
        if n_clients < 1:
            raise SimUsageError(f"-n {n_clients}: need at least 1 site")
        return [f"site-{i}" for i in range(1, n_clients + 1)]
    return job.named_sites() or ["site-1", "site-2"]


def idle_sites(job: Job, sites: list[str]) -> list[str]:
    """The sites no app of the job is deployed to (they would sit idle); a JobError when that is
    every one of them, naming the sites the deploy_map does name."""
    idle = [s for s in sites if job.client_app_for(s) is None]
    if idle and len(idle) == len(sites):
        named = job.named_sites()
        hint = f": run with -c {','.join(named)}" if named else ""
        raise JobError("meta.json", "deploy_map",
                       f"gives no app to any simulated site ({names(sites)}); it names "
                       f"{names(named)}{hint}, or deploy an app to \"@ALL\"")
    return idle


class Simulator(HoldsServer):
    """`prepare()` (raises JobError / SimUsageError), `start()`, then `wait()` -> result."""

    def __init__(
        self,
        job_folder: str | Path,
        workspace: str | Path | None = None,
        n_clients: int | None = None,
        clients: list[str] | None = None,
        threads: int | None = None,
        gpu: str | None = None,
        max_clients: int = 100,
        rounds: int | None = None,
        ready_timeout: float = 60.0,
        transport: str = "inproc",
        admin_port: int | None = None,
        processes: bool = False,
    ) -> None:
        """With `admin_port` (0 = a free one) the embedded server also serves the admin port,
        so `flshell --server ADDR` or the TUI can watch and steer the simulation.

        With `processes` (implied by `gpu`), the sites run in `threads` worker processes
        (`runtime.sim.workers`), which reach the engine over gRPC on loopback; with `gpu`, each
        worker sees its GPU group only (CUDA_VISIBLE_DEVICES), site i on group i mod G."""
        if transport not in ("inproc", "grpc"):
            raise SimUsageError(f"--transport {transport}: expected inproc or grpc")
        self.transport_kind = transport
        self.admin_port = admin_port
        self.server: FederationServer | None = None
        self.job_id: str | None = None
        self._transport: Any = None
        self._apps = SharedApps()  # the sites of this process unpack each job once
        self._record: Any = None  # the job's store record as the simulation ended
        self.job_folder = Path(job_folder)
        self.workspace_arg = workspace
        self.n_clients, self.clients = n_clients, clients
        self.threads, self.gpu_arg = threads, gpu
        self.processes = processes
        self.pool: Any = None
        self.lost_sites: dict[str, str] = {}
        self._lost_lock = threading.Lock()
        self._unreported: list[str] = []  # lost before the job started: reported once it has
        self._job_started = False  # (under _lost_lock: a worker may die while the job starts)
        self.on_connect_progress: Any = None  # (connected, total) while workers connect
        self.max_clients, self.rounds = max_clients, rounds
        self.ready_timeout = ready_timeout
        self.job: Job | None = None
        self.sites: list[str] = []
        self.runner: JobRunner | None = None  # the server's runner of the job, once it runs
        self.agents: list[SiteAgent] = []
        self.pump: SitePump | None = None
        self._sink: LogSink | None = None
        self._errors: Any = None  # the task_result events, for each site's last error
        self._last_errors: dict[str, str] = {}
        self._announced = False  # the admin port's watchers were told it closes
        self.idle_sites: list[str] = []
        self._t0_wall = 0.0

    @property
    def events(self):
        assert self.engine is not None, "call prepare() first"
        return self.engine.events

    def prepare(self) -> None:
        self.job = load_job(self.job_folder)
        self.sites = resolve_sites(self.job, self.n_clients, self.clients)
        self.idle_sites = idle_sites(self.job, self.sites)
        if len(self.sites) > self.max_clients:
            raise SimUsageError(
                f"{len(self.sites)} sites exceed the cap of {self.max_clients}; "
                f"raise it with -m {len(self.sites)}"
            )
        if self.threads is not None and self.threads < 1:
            raise SimUsageError(f"-t {self.threads}: need at least 1 thread")
        if self.rounds is not None and self.rounds < 1:
            raise SimUsageError(f"--rounds {self.rounds}: need at least 1 round")
        self.gpus = parse_gpus(self.gpu_arg)
        self.processes = self.processes or bool(self.gpus)
        self.gpu_note = check_gpus(self.gpus) if self.gpus else None
        if self.processes:
            from runtime.sim.workers import PlanError, plan_workers

            try:
                self.worker_plan = plan_workers(self.sites, self.threads, self.gpus)
            except PlanError as e:
                raise SimUsageError(str(e)) from None
            self.transport_kind = "grpc"
        root = Path(self.workspace_arg) if self.workspace_arg else paths.default("simulation", self.job.name)
        self.workspace = paths.ensure(root).resolve()
        self.overrides = {"num_rounds": self.rounds} if self.rounds else None
        self._preflight()
        # worker processes heartbeat (their host and GPU load); the in-process sites need not
        self.server = FederationServer(
            self.workspace / "server", heartbeat_interval=2.0 if self.processes else 5.0,
            monitor=False, max_jobs=1, ready_timeout=self.ready_timeout, schedule_interval=0.1,
            fl_port=0 if self.transport_kind == "grpc" else None,
            admin_port=self.admin_port, resume_unfinished=False).start()

    def _preflight(self) -> None:
        """Build the server app and each client app once, before anything runs, so a config
        error stops the run with the file and field at fault (exit 2), not a failed job."""
        assert self.job is not None
        _, controllers = build_server_app(self.job, "preflight", self.overrides)
        unregister(app_key(self.job.server_app()))
        if self.rounds and not any("num_rounds" in getattr(c, "__dict__", {}) for c in controllers):
            raise SimUsageError("--rounds: no workflow of this job has num_rounds")
        if not any(self.job.client_app_for(s) is not None for s in self.sites):
            raise JobError("meta.json", "deploy_map",
                           "no site runs this job: the deploy_map gives none of them a client app")
        self._check_client_apps()

    def _check_client_apps(self) -> None:
        """Build each client app once, up front, so config errors stop the run before it starts."""
        assert self.job is not None
        checked: set[str] = set()
        for site in self.sites:
            app = self.job.client_app_for(site)
            if app is None or app.name in checked:
                continue
            checked.add(app.name)
            if app.client_config is None:
                raise JobError(app.name, None,
                               f"deployed to {site} but has no config/config_client.json")
            builder = ComponentBuilder(app, app.client_config, variables={"SITE_NAME": site, "JOB_ID": "preflight"})
            with custom_imports(app):
                builder.build_components()
                for i, spec in enumerate(app.client_config.executors):
                    executor = builder.build(spec.executor)
                    validate = getattr(executor, "validate", None)
                    if callable(validate):
                        try:
                            validate(app)
                        except ArgError as e:
                            where = spec.executor
                            raise JobError(where.file, f"{where.json_path}.args.{e.arg}",
                                           f"expected {e.expected}, got {render(e.got)}") from None

    def flush_logs(self) -> None:
        """Write what the in-process sites logged so far (they write in batches)."""
        if self._sink is not None:
            self._sink.flush()

    def start(self) -> None:
        """Start the sites, then submit the job to the server, which schedules and runs it."""
        assert self.server is not None and self.engine is not None and self.job is not None
        try:
            self._start()
        except BaseException:
            self.shutdown()  # no worker, site or port outlives a start that failed
            raise

    def _start(self) -> None:
        assert self.server is not None and self.engine is not None and self.job is not None
        self._t0_wall = time.time()
        self._sink = LogSink()
        # bounded; with no reader it wakes no thread, and what overflows is the oldest errors
        self._errors = self.engine.events.subscribe(maxsize=10000, types={"task_result"})
        if self.processes:
            self._start_workers()
        else:
            if self.transport_kind == "grpc":  # the sites reach the engine over a real gRPC port
                from runtime.transport.grpc_client import GrpcSiteTransport

                self._transport = GrpcSiteTransport(self.server.fl_address)
            else:
                self._transport = InProcTransport(self.engine)
            self._start_sites(self._transport)
        manager = self.server.manager
        with self._lost_lock:  # a site lost from now on fails its part of the job
            self.job_id = manager.submit_folder(self.job_folder, "simulator",
                                                overrides=self.overrides)
            self._job_started = True
            late, self._unreported = self._unreported, []
        self.runner = self._launched(manager)
        for site in late:  # lost before the job started: its part fails now
            self._lose(site, self.lost_sites[site], started=True)

    def _launched(self, manager: Any) -> JobRunner | None:
        """The server's runner of the job once the scheduler starts it. A simulation's sites are
        all up (or known lost) by now, so a job the scheduler leaves WAITING would wait for
        good: it fails at once with the scheduler's reason and the lost sites named."""
        assert self.job_id is not None
        while True:
            runner = manager.runner_for(self.job_id, timeout=0.2)
            if runner is not None:
                return runner
            rec = manager.store.get(self.job_id)
            if rec.done:
                return None
            if rec.status == JobStatus.WAITING and rec.reason:
                lost = "; ".join(f"{s}: {why}" for s, why in sorted(self.lost_sites.items()))
                reason = f"the simulation cannot start the job: {rec.reason}"
                if manager.fail_waiting(self.job_id, reason + (f"; lost: {lost}" if lost else "")):
                    return None

    def _start_sites(self, transport: Any) -> None:
        """The sites as threads of this process, fed by one pump."""
        job = self.job
        assert job is not None
        n_threads = self.threads or len(self.sites)
        gate = threading.Semaphore(n_threads) if n_threads < len(self.sites) else None
        for site in self.sites:
            ws = self.workspace / site
            apps = DownloadedApps(transport, site, ws, shared=self._apps)  # as any site does
            agent = SiteAgent(site, transport, apps, ws, self._sink, gate, self._site_info(site))
            self.agents.append(agent)
        self.pump = SitePump(transport, self.agents)
        self.pump.start()

    def _site_info(self, site: str, worker: Any = None) -> dict[str, Any]:
        """What the site's scripts see in system_info(): with workers, which one hosts the
        site and its GPU group."""
        info: dict[str, Any] = {"simulated": True, "host_sites": len(self.sites)}
        if worker is not None:
            info["worker"] = worker.index
            if worker.gpu is not None:
                info["gpu"] = worker.gpu
        return info

    def _start_workers(self) -> None:
        """The sites in worker processes over gRPC on loopback; returns once every site is
        connected or known lost (its worker died or never connected: reported by site)."""
        from runtime.sim.workers import WorkerPool

        assert self.server is not None
        info = {s: self._site_info(s, w) for w in self.worker_plan for s in w.sites}
        self.pool = WorkerPool(self.worker_plan, self.server.fl_address,
                               self.workspace, info, self._worker_ended)
        self.pool.start()
        engine = self.engine

        def connected(site: str) -> bool:
            rec = engine.sites.get(site)
            return rec is not None and rec.status == SiteStatus.CONNECTED

        self.pool.wait_connected(connected, self.ready_timeout, self.on_connect_progress)

    def _worker_ended(self, worker: Any, why: str) -> None:
        """A worker died (or never connected): its sites are lost, by name, with the reason;
        the job goes on or fails per its min_clients / min_responses, as for a lost site."""
        for site in worker.sites:
            with self._lost_lock:
                self.lost_sites[site] = why
                started = self._job_started
                if not started:
                    self._unreported.append(site)
            self._lose(site, why, started)

    def _lose(self, site: str, why: str, started: bool) -> None:
        assert self.engine is not None
        if started and self.job_id is not None:  # (a report is a sign of life: first, then LOST)
            self.engine.report_job(site, self.job_id, "FAILED", why)
        self.engine.lose_site(site, why)

    def abort(self, by: str = "user") -> None:
        if self.runner is not None:
            self.runner.abort(by)
        elif self.job_id is not None and self.manager is not None:
            try:
                self.manager.abort_job(self.job_id, by)
            except Exception:  # noqa: BLE001 - it ended meanwhile
                pass

    @property
    def done(self) -> bool:
        """The job has ended (or never ran)."""
        if self.runner is not None:
            return self.runner.done
        if self.job_id is None or self._record is not None:
            return True
        return self.manager.store.get(self.job_id).done

    def wait(self, timeout: float | None = None) -> SimulationResult:
        try:
            if self.runner is not None:
                self.runner.wait(timeout)
        finally:
            self.shutdown()
        return self.result()

    def shutdown(self) -> None:
        """Let sites finish their job's end (scripts return, logs flush), then stop them."""
        self._announce_end()
        if self.pool is not None:  # the workers end their sites' job and say goodbye themselves
            self.pool.stop(quick=self.runner is not None and self.runner.status != JobStatus.COMPLETED)
        deadline = time.monotonic() + 10
        while any(a.busy for a in self.agents) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pump is not None:
            self.pump.request_stop()
        if self.server is not None:
            self.server.quiesce()  # wakes the pump
        if self.pump is not None:
            self.pump.stop()
        for agent in self.agents:
            agent.stop(timeout=5)
        if self._sink is not None:
            self._sink.close()  # the sites' last log lines go to the server first
        if self._transport is not None:
            self._transport.close()
        if self.server is not None:
            if self.job_id is not None and self._record is None:
                self._record = self.server.manager.store.get(self.job_id)  # kept for result()
            self.server.close(0.5 if self.admin_server is not None else 0)
        if self._errors is not None:
            self._site_errors()
            self._errors.close()

    def _announce_end(self) -> None:
        """Tell whoever watches the admin port that it is about to close for good, after the
        job's final job_status: an attached console or TUI can then say the simulation ended
        instead of trying to reconnect to a server that will not come back. The watch streams
        deliver it during the port's grace period."""
        if self.admin_server is None or self.engine is None or self.runner is None or self._announced:
            return
        self._announced = True
        r = self.runner
        self.engine.events.publish(
            "operator", action="shutdown", target="server", by="simulator", final=True,
            job_id=r.job_id, status=r.status,
            reason=f"the simulation ended: job {self.job.name if self.job else r.job_id} {r.status}",
        )

    def result(self) -> SimulationResult:
        assert self.job is not None
        r = self.runner
        if r is None:
            return self._result_without_a_run()
        import json

        records = [json.loads(p.read_text()) for p in sorted(r.workspace.rounds_dir.glob("round_*.json"))]
        metrics: dict[str, Any] = records[-1].get("metrics", {}) if records else {}
        # the job's own time: not the sites' shutdown after it, nor a TUI left open on it
        ended = r.ended_at if r.done and r.ended_at else time.time()
        return SimulationResult(
            job_id=r.job_id, job_name=self.job.name, status=r.status, reason=r.reason,
            failed_sites=r.failed_sites, failure_details=r.failure_details,
            rounds_completed=len(records), total_rounds=r.ctx.total_rounds if r.ctx else None,
            wall_time=max(0.0, ended - self._t0_wall), metrics=metrics, workspace=self.workspace,
            job_dir=r.workspace.root, result_dir=r.workspace.result_dir,
            server_log=r.workspace.logs_dir / "server.log",
            site_log_pattern=str(self.workspace / "{site}" / "jobs" / r.job_id / "log.txt"),
            lost_sites=dict(self.lost_sites),
            site_failures=site_failures(records, self._site_errors()),
            idle_sites=list(self.idle_sites),
        )

    def _result_without_a_run(self) -> SimulationResult:
        """The job ended before the server ran it (it could not be prepared there)."""
        assert self.job is not None and self.manager is not None
        job_id = self.job_id or "-"
        rec = self._record
        if rec is None and self.job_id is not None and self.server is not None \
                and not self.server.closed:
            rec = self.manager.store.get(self.job_id)
        job_dir = self.workspace / "server" / "jobs" / job_id
        return SimulationResult(
            job_id=job_id, job_name=self.job.name, status=rec.status if rec else JobStatus.FAILED,
            reason=rec.reason if rec else "the job was not submitted", failed_sites=[],
            failure_details={}, rounds_completed=0, total_rounds=None,
            wall_time=max(0.0, time.time() - self._t0_wall), metrics={}, workspace=self.workspace,
            job_dir=job_dir, result_dir=job_dir / "result", server_log=job_dir / "logs" / "server.log",
            site_log_pattern=str(self.workspace / "{site}" / "jobs" / job_id / "log.txt"),
            lost_sites=dict(self.lost_sites), site_failures={}, idle_sites=list(self.idle_sites))

    def _site_errors(self) -> dict[str, str]:
        """Each site's last task error so far (from the task_result events)."""
        if self._errors is not None:
            job_id = self.job_id
            for ev in self._errors.drain():
                if ev.get("type") == "task_result" and not ev.get("ok") and ev.get("job_id") == job_id:
                    self._last_errors[ev["site"]] = ev.get("error") or ""
        return self._last_errors
