"""Runs one job on the server: build its controllers, deploy to sites, wait for them, run."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from runtime.logfiles import LogSink
from runtime.jobs import ComponentBuilder, Job, JobError, app_key, custom_imports, unregister
from runtime.model import FLModel
from runtime.server.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from runtime.server.job_state import JobLifecycle, JobStatus
from runtime.server.job_workspace import JobWorkspace
from runtime.workflows.tasks import GroupOutcome, TaskGroup
from runtime.transport.base import JobStart, JobState

if TYPE_CHECKING:
    from runtime.server.engine import ServerEngine


SITE_LOG_INTERVAL = 5.0  # seconds between writes of the site logs the server collects
LOG_GRACE = 10.0  # seconds a finished job still takes the log lines its sites ship as they end
MAX_REJOINS = 3  # times a running job is started again on a site whose part of it failed


@dataclass
class JobContext:
    """What a controller sees of its job."""

    job_id: str
    job: Job
    engine: "ServerEngine"
    components: ComponentBuilder
    workspace: JobWorkspace | None
    logger: logging.Logger
    abort_event: threading.Event
    sites: list[str] = field(default_factory=list)
    current_group: TaskGroup | None = None
    last_outcome: GroupOutcome | None = None
    current_round: int | None = None
    total_rounds: int | None = None
    metrics_writer: Any = None  # runtime.tracking.MetricsWriter once the job starts
    workflow_index: int = 0  # which of the job's workflows is running
    on_round: Callable[[dict[str, Any]], None] | None = None  # e.g. the job store's record
    resume: Checkpoint | None = None  # set when a restarted server resumes the job
    _resumed: Checkpoint | None = None  # the checkpoint whose model was taken, for its state
    _round_started_at: float = 0.0

    def take_resume_model(self) -> FLModel | None:
        """The checkpointed global model to resume from, once, for the workflow that saved it."""
        cp, self.resume = self.resume, None
        if cp is None or cp.workflow != self.workflow_index:
            return None
        self._resumed = cp
        return cp.load_model()

    def take_resume_state(self) -> FLModel | None:
        """The workflow state checkpointed with the model `take_resume_model` gave, once."""
        cp, self._resumed = self._resumed, None
        return cp.load_state() if cp is not None else None

    def round_started(self, current_round: int, total_rounds: int, targets: list[str]) -> None:
        self.current_round, self.total_rounds = current_round, total_rounds
        self._round_started_at = time.monotonic()
        self.last_outcome = None
        self.engine.events.publish(
            "round_started", job_id=self.job_id, round=current_round, total_rounds=total_rounds,
            sites=len(targets),
        )
        self.logger.info(f"round {current_round + 1}/{total_rounds} started: {len(targets)} sites")

    def round_completed(self, current_round: int, metrics: dict[str, Any]) -> None:
        o = self.last_outcome
        record = {
            "round": current_round,
            "total_rounds": self.total_rounds,
            "seconds": round(time.monotonic() - self._round_started_at, 4),
            "sites_ok": sorted(o.ok_sites) if o else [],
            "sites_failed": sorted(o.failed) if o else [],
            "sites_timed_out": sorted(o.timed_out) if o else [],
            "metrics": metrics,
        }
        # persisted before the round is reported done: checkpoint first, it is what a restart trusts
        write_checkpoint(self.workspace.root, record, self.workflow_index)
        self.workspace.record_round(record)
        if self.on_round is not None:
            self.on_round(record)
        if self.metrics_writer is not None:
            now = time.time()
            try:
                self.metrics_writer.write("server", [
                    {"tag": str(k), "value": float(v), "step": current_round, "wall_time": now}
                    for k, v in metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)])
                self.metrics_writer.flush()
            except (ValueError, TypeError, OSError) as e:
                self.logger.warning(f"round metrics not written to TensorBoard files: {e}")
        self.engine.events.publish("round_completed", job_id=self.job_id, **record)
        self.logger.info(f"round {current_round + 1}/{self.total_rounds} completed: {metrics}")


class JobRunner:
    """Owns one job's life on the server. `prepare()` raises JobError on a bad config."""

    def __init__(
        self,
        engine: "ServerEngine",
        job: Job,
        sites: list[str],
        lifecycle: JobLifecycle,
        job_id: str | None = None,
        overrides: dict[str, Any] | None = None,
        ready_timeout: float = 60.0,
        on_round: Callable[["JobRunner", dict[str, Any]], None] | None = None,
        resume: bool = False,
        late_sites: list[str] | None = None,
    ) -> None:
        """Runs a stored job: its status moves through `lifecycle` (the store, then the
        job_status event), `on_round` sees every completed round (the store records it). With
        `resume`, the job continues after the last round of its checkpoint (a server restarted
        while it ran)."""
        self.engine = engine
        self.lifecycle: JobLifecycle | None = lifecycle
        self.on_round = on_round
        self.resume = resume
        self.job = job
        self.job_id = job_id or str(uuid.uuid4())
        self.targets = [s for s in sites if job.client_app_for(s) is not None]
        # sites a resumed job ran on that were not back when it started again: they join the
        # job when they register (as a target that restarted does)
        self.late_sites = {s for s in late_sites or () if s not in self.targets}
        self.overrides = overrides or {}
        self.ready_timeout = ready_timeout
        self.status = JobStatus.SUBMITTED
        self.reason: str | None = None
        self.failed_sites: list[str] = []
        self.failure_details: dict[str, str] = {}
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.abort_event = threading.Event()
        self.aborted_by: str | None = None
        self.job_root = engine.workspace / "jobs" / self.job_id
        self.workspace: JobWorkspace | None = None  # made by start(): a rejected job leaves nothing
        self.logger = logging.Logger(f"job.{self.job_id[:8]}", logging.INFO)  # unregistered: no leak
        self.logger.addHandler(logging.NullHandler())
        self._reports: dict[str, tuple[str, str | None]] = {}
        self._rejoins: dict[str, int] = {}  # site -> times the job was started there again
        self._reports_cond = threading.Condition()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.controllers: list[Any] = []
        self.ctx: JobContext | None = None
        self.metrics_writer: Any = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Build the server app's components and workflows; raises JobError."""
        builder, self.controllers = build_server_app(self.job, self.job_id, self.overrides)
        self.ctx = JobContext(
            self.job_id, self.job, self.engine, builder, None, self.logger, self.abort_event,
        )
        if self.on_round is not None:
            self.ctx.on_round = lambda record: self.on_round(self, record)
        if not self.targets:
            raise JobError("meta.json", "deploy_map",
                           "no site runs this job: the deploy_map gives none of them a client app")

    def release(self) -> None:
        """Let go of what `prepare()` took (the server app's custom imports), for a runner
        that will not start."""
        try:
            unregister(app_key(self.job.server_app()))
        except JobError:
            pass  # no server app: prepare() took nothing

    def start(self) -> None:
        if self.ctx is None:
            self.prepare()
        self.workspace = self.ctx.workspace = JobWorkspace(self.job_root)
        _add_file_handler(self.logger, self.workspace.logs_dir / "server.log")
        from runtime.tracking import MetricsWriter

        self.metrics_writer = self.ctx.metrics_writer = MetricsWriter(self.workspace.result_dir / "tb")
        self.engine.add_metric_sink(self.job_id, self._on_site_metrics)
        # written in long batches: whoever reads a site's log (tail_log) flushes it first
        self.site_logs = LogSink(interval=SITE_LOG_INTERVAL)
        self._site_log_paths: dict[str, Path] = {}
        self.engine.add_log_sink(self.job_id, self._on_site_log)
        self.workspace.copy_job_folder(self.job.root)
        if self.resume:
            self._load_checkpoint()
        self.engine.add_job_listener(self.job_id, self._on_site_report)
        self.engine.add_site_listener(self.job_id, self._on_site_registered)
        self._write_status()
        self._thread = threading.Thread(target=self._run, name=f"job-{self.job_id[:8]}", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> str:
        self._done.wait(timeout)
        return self.status

    def abort(self, by: str = "user") -> None:
        if self.status in JobStatus.FINAL:
            return
        self.aborted_by = by
        self.abort_event.set()
        with self._reports_cond:
            self._reports_cond.notify_all()
        group = self.ctx.current_group if self.ctx is not None else None
        if group is not None:
            group.wake()  # the abort reaches the sites now, not at the group's next tick

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def detach(self) -> None:
        """Stop recording this job anywhere (store, status file, round records): its server is
        going away and the job is to resume where its last checkpoint left it."""
        self.lifecycle = self.on_round = None
        if self.ctx is not None:
            self.ctx.on_round = None
        self.workspace = None  # ctx.workspace stays: a round that completes now is checkpointed

    # ---- the job thread ----------------------------------------------------------------------

    def _run(self) -> None:
        assert self.ctx is not None
        deployed: list[str] = []
        try:
            # a resumed job stays RUNNING in the store while its sites start it again
            self._set_status(JobStatus.WAITING, reason=f"deploying to {len(self.targets)} sites",
                             record=not self.resume)
            from runtime.jobs.upload import pack_job

            root = self.job.root
            self.engine.add_job_archive(self.job_id, self.targets, lambda: pack_job(root))
            for site in self.targets:
                app = self.job.client_app_for(site)
                self.engine.start_job_on(site, JobStart(self.job_id, self.job.name, app.name))
                deployed.append(site)
            self.ctx.sites = self._wait_ready()
            self.started_at = time.time()
            resumed = self.ctx.resume
            self._set_status(JobStatus.RUNNING, reason=None if not self.resume else (
                f"resumed after round {resumed.round + 1}" if resumed else "resumed from its first round"))
            for site in sorted(self.late_sites):  # back while the job started again
                rec = self.engine.sites.get(site)
                if rec is not None and rec.status == "CONNECTED":
                    self._on_site_registered(site)
            app = self.job.server_app()
            first = self.ctx.resume.workflow if self.ctx.resume else 0
            with custom_imports(app):
                for i, controller in enumerate(self.controllers):
                    if self.abort_event.is_set():
                        break
                    if i < first:
                        continue  # finished before the server restarted
                    self.ctx.workflow_index = i
                    controller.bind(self.ctx)
                    controller.run()
            if self.abort_event.is_set():
                self._set_status(JobStatus.ABORTED, reason=f"aborted by {self.aborted_by}")
            else:
                self._set_status(JobStatus.COMPLETED)
        except BaseException as e:  # noqa: BLE001 - any failure ends the job, with its reason
            self._fail(e)
        finally:
            for site in deployed:
                self.engine.end_job_on(site, self.job_id, self.status)
            self.engine.remove_job_listener(self.job_id)
            self.engine.remove_site_listener(self.job_id)
            self.engine.remove_metric_sink(self.job_id)
            # sites ship their last log lines as their part ends: keep listening a little
            self.flush_site_logs()
            threading.Timer(LOG_GRACE, self._stop_site_logs).start()
            self.engine.remove_job_archive(self.job_id)
            if self.metrics_writer is not None:
                self.metrics_writer.close()
            unregister(app_key(self.job.server_app()))
            self.ended_at = time.time()
            self._write_status()
            for h in list(self.logger.handlers):
                h.close()
                self.logger.removeHandler(h)
            self._done.set()

    def _fail(self, e: BaseException) -> None:
        from runtime.workflows.base import JobAborted, JobFailed

        if isinstance(e, JobAborted) or self.abort_event.is_set():
            self._set_status(JobStatus.ABORTED, reason=f"aborted by {self.aborted_by}")
            return
        if isinstance(e, JobFailed):
            self.failed_sites, self.failure_details = e.sites, e.details
            reason = str(e)
        else:
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            self.failure_details = {"server": "".join(tb)}
            reason = f"controller raised {type(e).__name__}: {e}"
        if self.ctx and self.ctx.current_round is not None:
            reason = f"round {self.ctx.current_round + 1}: {reason}"
        self.logger.error(reason)
        for site, detail in self.failure_details.items():
            self.logger.error(f"{site}:\n{detail}")
        self._set_status(JobStatus.FAILED, reason=reason)

    def _on_site_metrics(self, site: str, records: list[dict[str, Any]]) -> None:
        try:
            self.metrics_writer.write(site, records)
        except (ValueError, TypeError, OSError) as e:
            self.logger.warning(f"metrics from {site} not written: {e}")

    def _on_site_log(self, site: str, text: str) -> None:
        """Log text a site shipped: appended to logs/<site>.log of the job on the server (in
        batches: a thousand sites shipping at once cost a thousand appends a flush, not a
        thousand file opens a second each)."""
        if self.workspace is None:
            return
        path = self._site_log_paths.get(site)
        if path is None:
            if site not in self.targets:
                return  # only sites the job is deployed to, whose names are checked (no paths)
            path = self._site_log_paths[site] = self.workspace.logs_dir / f"{site}.log"
        self.site_logs.write(path, text)

    def flush_site_logs(self) -> None:
        """Write what the sites shipped so far (before someone reads their logs)."""
        try:
            self.site_logs.flush()
        except OSError as e:
            self.logger.warning(f"site logs not written: {e}")

    def _stop_site_logs(self) -> None:
        self.engine.remove_log_sink(self.job_id)
        self.site_logs.close()

    def _load_checkpoint(self) -> None:
        """Resume after a restart: the checkpoint's round counts as done (recorded again if the
        crash came between checkpoint and record), its model is where the workflow goes on."""
        cp = read_checkpoint(self.workspace.root)
        if cp is None:
            self.logger.info("no round checkpoint: the job starts from its first round")
            return
        self.ctx.resume = cp
        if not (self.workspace.rounds_dir / f"round_{cp.round:05d}.json").is_file():
            self.workspace.record_round(cp.record)
        if self.ctx.on_round is not None:  # the crash may have come between the file and the
            self.ctx.on_round({**cp.record, "replayed": True})  # store: the store checks
        self.logger.info(f"resuming after round {cp.round + 1} (its checkpoint is in {cp.folder})")

    def _on_site_report(self, site: str, state: str, detail: str | None) -> None:
        with self._reports_cond:
            self._reports[site] = (state, detail)
            self._reports_cond.notify_all()
        if self.status != JobStatus.RUNNING or site not in self.targets:
            return
        if state == JobState.FAILED:
            self.logger.warning(f"{site} reported its job part failed: {detail}")
            self._rejoin_later(site)
        elif state == JobState.READY and self.ctx is not None:
            if site not in self.ctx.sites:  # it could not start with the others
                self.ctx.sites.append(site)
            self.logger.info(f"{site} runs the job again: it gets the next round's tasks")

    def _rejoin_later(self, site: str) -> None:
        """Start the job again on `site` (its process died, its agent restarted), a few times at
        most, after a pause that doubles each time: a site that keeps failing is left out."""
        tries = self._rejoins.get(site, 0)
        if tries >= MAX_REJOINS:
            self.logger.warning(f"{site}: its part failed {tries + 1} times; not started there again")
            return
        self._rejoins[site] = tries + 1
        timer = threading.Timer(0.5 * 2 ** tries, self._start_on, (site,))
        timer.daemon = True
        timer.start()

    def _on_site_registered(self, site: str) -> None:
        """A site of this running job registered again (its agent restarted): start the job
        there again; a site that still runs it says so and goes on."""
        if self.status == JobStatus.RUNNING and site in self.late_sites:
            self.late_sites.discard(site)
            self.targets.append(site)
            self.logger.info(f"{site}, which ran the job before the restart, is back")
        if self.status == JobStatus.RUNNING and site in self.targets:
            self._start_on(site)

    def _start_on(self, site: str) -> None:
        if self.status != JobStatus.RUNNING or self.abort_event.is_set():
            return
        app = self.job.client_app_for(site)
        self.logger.info(f"starting the job on {site} again")
        try:
            self.engine.start_job_on(site, JobStart(self.job_id, self.job.name, app.name))
        except Exception as e:  # noqa: BLE001 - e.g. the site was removed meanwhile
            self.logger.warning(f"could not start the job on {site} again: {e}")

    def _wait_ready(self) -> list[str]:
        """Sites that deployed the app: all targets, or at least min_clients after the wait."""
        from runtime.workflows.base import JobFailed

        deadline = time.monotonic() + self.ready_timeout
        with self._reports_cond:
            while len(self._reports) < len(self.targets) and not self.abort_event.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._reports_cond.wait(min(left, 0.5))
            reports = dict(self._reports)
        ready = [s for s in self.targets if reports.get(s, ("",))[0] == JobState.READY]
        failed = {s: r[1] or "failed" for s, r in reports.items() if r[0] == JobState.FAILED}
        missing = [s for s in self.targets if s not in reports]
        mandatory_bad = [s for s in self.job.mandatory_clients if s not in ready]
        if self.abort_event.is_set():
            from runtime.workflows.base import JobAborted

            raise JobAborted("aborted while waiting for sites")
        if len(ready) < self.job.min_clients or mandatory_bad:
            parts = [f"{len(ready)} of {len(self.targets)} sites ready, min_clients={self.job.min_clients}"]
            if mandatory_bad:
                parts.append("mandatory sites not ready: " + ", ".join(mandatory_bad))
            if failed:
                parts.append("failed to start: " + ", ".join(sorted(failed)))
            if missing:
                parts.append(f"no answer after {self.ready_timeout:g}s: " + ", ".join(missing))
            raise JobFailed("; ".join(parts), sites=sorted(failed) + missing, details=failed)
        if failed or missing:
            self.logger.warning(
                f"starting with {len(ready)} of {len(self.targets)} sites "
                f"(min_clients={self.job.min_clients}); failed: {sorted(failed)}, no answer: {missing}"
            )
        return ready

    # ---- status ------------------------------------------------------------------------------

    def _set_status(self, status: str, reason: str | None = None, record: bool = True) -> None:
        """The job's new status: its status.json first (whoever sees the new status in the store
        finds its details), then the lifecycle (store and event) unless not `record`."""
        self.status = status
        self.reason = reason
        self._write_status()
        self.logger.info(f"job {self.job_id} {status}" + (f": {reason}" if reason else ""))
        if self.lifecycle is None or not record:
            return  # detached: its server is going away, the job resumes on the next one
        sites = self.ctx.sites if status == JobStatus.RUNNING and self.ctx else None
        try:
            self.lifecycle.move(self.job_id, status, reason, sites=sites or None,
                                failed_sites=self.failed_sites or None)
        except Exception as e:  # noqa: BLE001 - a bookkeeping failure must not kill the job
            self.logger.warning(f"status {status} not recorded: {e}")

    def _write_status(self) -> None:
        if self.workspace is not None:
            self.workspace.write_status(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.job.name,
            "status": self.status,
            "reason": self.reason,
            "failed_sites": self.failed_sites,
            "failure_details": self.failure_details,
            "sites": self.targets,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "current_round": self.ctx.current_round if self.ctx else None,
            "total_rounds": self.ctx.total_rounds if self.ctx else None,
        }


def build_server_app(job: Job, job_id: str,
                     overrides: dict[str, Any] | None = None) -> tuple[ComponentBuilder, list[Any]]:
    """The server app's components and its workflows' controllers, built (JobError says which
    file and field is wrong): what a runner runs, and what a preflight check builds."""
    app = job.server_app()
    cfg = app.server_config
    if cfg is None:
        raise JobError(app.name, None, "the app deployed to the server has no config_server.json")
    builder = ComponentBuilder(app, cfg, variables={"JOB_ID": job_id, "SITE_NAME": "server"})
    controllers = []
    with custom_imports(app):
        builder.build_components()
        for spec in cfg.workflows:
            if overrides:
                spec = _with_overrides(spec, overrides)
            controller = builder.build(spec)
            if not callable(getattr(controller, "run", None)) or not hasattr(controller, "bind"):
                raise JobError(
                    spec.file, spec.json_path,
                    f'"{spec.path}" is not a controller (subclass '
                    f"runtime.workflows.ModelController and write run())",
                )
            controllers.append(controller)
    return builder, controllers


def _with_overrides(spec: Any, overrides: dict[str, Any]) -> Any:
    """A copy of a workflow spec with the args named in `overrides` replaced (e.g. num_rounds)."""
    import dataclasses

    import importlib
    import inspect

    args = dict(spec.args)
    module, _, name = spec.path.rpartition(".")
    try:
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        params = {}
    for key, value in overrides.items():
        if key in args or key in params:
            args[key] = value
    return dataclasses.replace(spec, args=args)


def _add_file_handler(logger: logging.Logger, path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
