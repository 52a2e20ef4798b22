"""The site agent: registers, takes messages, runs each job's executors, pushes results.

`handle(msg)` never waits for a task to finish: a Client API script completes its task from its
own thread, other executors run on a worker thread per job. So one loop (the agent's own, or a
`SitePump` serving many simulated sites) stays free to deliver the next message, aborts included.
"""

from __future__ import annotations

import fnmatch
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from runtime.client.backoff import Backoff, retrying
from runtime.client.executors import Executor, SiteJobContext
from runtime.client.sitelog import LogSink, site_logger
from runtime.jobs import App, ComponentBuilder, JobError, custom_imports
from runtime.model import FLModel
from runtime.transport.base import (
    JobEnd,
    JobStart,
    JobState,
    NotRegistered,
    SiteCommand,
    SiteMessage,
    SiteTransport,
    TaskAssignment,
    TaskResult,
    TransportError,
)

AppSource = Callable[[JobStart], App]
LOG_SHIP_GRACE = 10.0  # seconds a job's log is still shipped after its part ended here
REPORT_WITHIN = 60.0  # seconds a job report or a task result is retried while the server is unreachable
Filters = list[tuple[list[str], list[Any]]]


def _matching(filters: Filters, task: str) -> list[Any]:
    out: list[Any] = []
    for patterns, fs in filters:
        if any(fnmatch.fnmatchcase(task, p) for p in patterns):
            out.extend(fs)
    return out


@dataclass
class _SiteJob:
    ctx: SiteJobContext
    executors: list[tuple[list[str], Executor]]
    data_filters: Filters = field(default_factory=list)
    result_filters: Filters = field(default_factory=list)
    worker: "queue.SimpleQueue[Callable[[], None] | None] | None" = None
    worker_thread: threading.Thread | None = None
    _by_task: dict[str, Executor | None] = field(default_factory=dict)

    def executor_for(self, task: str) -> Executor | None:
        if task not in self._by_task:
            self._by_task[task] = next(
                (ex for patterns, ex in self.executors
                 if any(fnmatch.fnmatchcase(task, p) for p in patterns)), None)
        return self._by_task[task]

    def run_in_worker(self, fn: Callable[[], None]) -> None:
        """Run blocking executors one task at a time on this job's worker thread."""
        if self.worker is None:
            self.worker = queue.SimpleQueue()
            self.worker_thread = threading.Thread(
                target=_drain, args=(self.worker,), name=f"{self.ctx.site}-worker", daemon=True
            )
            self.worker_thread.start()
        self.worker.put(fn)


def _drain(q: "queue.SimpleQueue[Callable[[], None] | None]") -> None:
    while (fn := q.get()) is not None:
        fn()


class SiteAgent:
    """One site. `start()` registers it and runs its own poll loop; or register it and feed it
    messages from a SitePump. `gate` bounds how many sites execute a task at once."""

    def __init__(
        self,
        name: str,
        transport: SiteTransport,
        app_source: AppSource,
        workspace: str | Path,
        log_sink: LogSink,
        gate: threading.Semaphore | None = None,
        info: dict[str, Any] | None = None,
        poll_timeout: float = 2.0,
    ) -> None:
        self.name = name
        self.transport = transport
        self.app_source = app_source
        self.workspace = Path(workspace)
        self.sink = log_sink
        self.gate = gate
        self.info = dict(info or {})
        self.poll_timeout = poll_timeout
        self.jobs: dict[str, _SiteJob] = {}
        self._ending: list[tuple[Executor, SiteJobContext]] = []  # stopped, maybe still running
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.registered = False
        self.on_command: Callable[[str], None] | None = None  # see command()
        self.heartbeat_interval = 5.0
        self.report_within = REPORT_WITHIN
        self.logger = site_logger(f"site.{name}", log_sink.writer(self.workspace / "log.txt"))

    # ---- lifecycle ---------------------------------------------------------------------------

    def register(self) -> None:
        reply = self.transport.register(self.name, self.info)
        self.heartbeat_interval = float(reply.get("heartbeat_interval", 5.0))
        self.registered = True

    def start(self, heartbeats: bool = False) -> None:
        """Poll on a thread of its own (registering first, retrying until the server answers);
        with `heartbeats`, also report liveness and host/GPU load every heartbeat interval."""
        self._thread = threading.Thread(target=self.run, name=f"{self.name}-agent", daemon=True)
        self._thread.start()
        if heartbeats:
            threading.Thread(target=self._heartbeat_loop, name=f"{self.name}-heartbeat",
                             daemon=True).start()

    def run(self) -> None:
        """Poll and handle messages until stop(); when the server goes away, retry with capped
        exponential backoff and jitter, and register again once it is back."""
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                if not self.registered:
                    self.register()
                    self.logger.info(f"{self.name} registered")
                msg = self.transport.poll(self.name, self.poll_timeout)
                backoff.reset()
            except TransportError as e:
                if self._stop.is_set():
                    break
                if isinstance(e, NotRegistered):
                    self.registered = False  # the server restarted and forgot us
                delay = backoff.delay()
                self.logger.warning(f"server unreachable ({e}); retrying in {delay:.1f}s")
                self._stop.wait(delay)
                continue
            if msg is not None:
                self.handle(msg)

    def _heartbeat_loop(self) -> None:
        from runtime.monitor import load_report

        while not self._stop.wait(self.heartbeat_interval):
            if not self.registered:
                continue
            try:
                info = self.heartbeat_info()  # GPU processes are named by the job_pids' jobs
                self.transport.heartbeat(self.name, {**info, **load_report(info.get("job_pids"))})
            except TransportError as e:
                if isinstance(e, NotRegistered):
                    self.registered = False
                self.logger.warning(f"heartbeat failed: {e}")

    def heartbeat_info(self) -> dict[str, Any]:
        """What a heartbeat says about this site's jobs (host and GPU load are added to it)."""
        return {"jobs": sorted(self.jobs)}

    def handle(self, msg: SiteMessage) -> None:
        if isinstance(msg, JobStart):
            self._start_job(msg)
        elif isinstance(msg, TaskAssignment):
            self._start_task(msg)
        elif isinstance(msg, JobEnd):
            self._end_job(msg.job_id, msg.status)
        elif isinstance(msg, SiteCommand):
            self.command(msg.action)

    def command(self, action: str) -> None:
        """An operator's shutdown / restart: `on_command(action)` decides (the site process
        exits, or re-executes itself); without one, the agent stops."""
        self.logger.info(f"{self.name}: operator command {action!r}")
        if self.on_command is not None:
            self.on_command(action)
        else:
            self.request_stop()

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for job_id in list(self.jobs):
            self._end_job(job_id, "site stopped")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.join_ended(timeout)
        try:
            self.transport.goodbye(self.name)
        except TransportError:
            pass

    def join_ended(self, timeout: float = 10.0) -> None:
        """Wait for the executors of ended jobs (their scripts) to return."""
        deadline = time.monotonic() + timeout
        while self._ending:
            ex, ctx = self._ending.pop()
            ex.join(ctx, max(0.0, deadline - time.monotonic()))

    # ---- jobs --------------------------------------------------------------------------------

    def _start_job(self, msg: JobStart) -> None:
        if msg.job_id in self.jobs:  # a restarted server resumes a job this site still runs
            self.report_job(msg.job_id, JobState.READY)
            return
        job_dir = self.workspace / "jobs" / msg.job_id  # made by whoever writes there first
        log = job_dir / "log.txt"
        write = self.sink.writer(log)
        job_id, site = msg.job_id, self.name  # the job's log goes to the server as any site's
        self.sink.ship(log, lambda text: self.transport.ship_log(site, job_id, text))
        logger = site_logger(f"{self.name}.{msg.job_id[:8]}", write)
        try:
            app = self.app_source(msg)
            cfg = app.client_config
            if cfg is None:
                raise JobError(app.name, None, "the app has no config/config_client.json")
            ctx = SiteJobContext(
                site=self.name, job_id=msg.job_id, app=app, workspace=job_dir, logger=logger,
                abort_event=threading.Event(), info={**self.info, "workspace": str(job_dir)},
                log_write=write,
                ship_metrics=self._metric_shipper(msg.job_id),
            )
            builder = ComponentBuilder(
                app, cfg, variables={"SITE_NAME": self.name, "JOB_ID": msg.job_id}
            )
            ctx.components = builder
            with custom_imports(app):
                builder.build_components()
                executors = [(spec.tasks, builder.build(spec.executor)) for spec in cfg.executors]
                data_f = [(f.tasks, [builder.build(c) for c in f.filters]) for f in cfg.task_data_filters]
                result_f = [(f.tasks, [builder.build(c) for c in f.filters]) for f in cfg.task_result_filters]
            job = _SiteJob(ctx, executors, data_f, result_f)
            for _, ex in executors:
                ex.start(ctx)
        except Exception as e:  # noqa: BLE001 - reported to the server, the site stays up
            detail = str(e) if isinstance(e, JobError) else traceback.format_exc()
            logger.error(f"job {msg.job_id} could not start on {self.name}: {detail}")
            self._report_quietly(logger, msg.job_id, JobState.FAILED, detail)
            return
        self.jobs[msg.job_id] = job
        logger.info(f"job {msg.job_id} ({msg.job_name}) ready on {self.name}")
        self._report_quietly(logger, msg.job_id, JobState.READY)

    def _report_quietly(self, logger, job_id: str, state: str, detail: str | None = None) -> None:
        try:
            self.report_job(job_id, state, detail)
        except TransportError as e:  # the server will time the site out of the job
            logger.error(f"could not tell the server job {job_id} is {state}: {e}")

    def report_job(self, job_id: str, state: str, detail: str | None = None) -> None:
        """Tell the server this site's part of `job_id` is READY, FINISHED or FAILED, retried
        while the connection is down (one dropped connection must not fail a job's start)."""
        self._retried(lambda: self.transport.report_job(self.name, job_id, state, detail),
                      f"report of job {job_id} {state}")

    def _retried(self, call: Callable[[], Any], what: str) -> Any:
        def warn(e: Exception, delay: float) -> None:
            self.logger.warning(f"{what} not delivered ({e}); retrying in {delay:.1f}s")

        return retrying(call, within=self.report_within, stop=self._stop, on_retry=warn)

    def _metric_shipper(self, job_id: str):
        def ship(records: list[dict[str, Any]]) -> None:
            try:
                self.transport.log_metrics(self.name, job_id, records)
            except TransportError as e:
                self.logger.warning(f"{len(records)} metric records not delivered: {e}")
        return ship

    def _start_task(self, msg: TaskAssignment) -> None:
        started = time.monotonic()
        job = self.jobs.get(msg.job_id)

        def done(result: FLModel | None, error: str | None) -> None:
            self._finish_task(job, msg, started, result, error)

        try:
            if job is None:
                raise RuntimeError(f"{self.name} has no running job {msg.job_id}")
            executor = job.executor_for(msg.task_name)
            if executor is None:
                raise RuntimeError(f"no executor on {self.name} handles task '{msg.task_name}'")
            filters = _matching(job.data_filters, msg.task_name)

            def prepare() -> FLModel:  # runs when work starts: inside the gate, on its thread
                model = msg.take_model()
                for f in filters:
                    model = f.process(model, job.ctx)
                return model

            if not executor.submit(msg.task_name, prepare, job.ctx, done, self.gate):
                job.run_in_worker(lambda: self._execute(executor, job, msg.task_name, prepare, done))
        except Exception:  # noqa: BLE001 - the task fails, the site stays up
            done(None, traceback.format_exc())

    def _execute(self, executor: Executor, job: _SiteJob, task: str, prepare, done) -> None:
        job.ctx.workspace.mkdir(parents=True, exist_ok=True)
        if self.gate is not None:
            self.gate.acquire()
        try:
            result = executor.execute(task, prepare(), job.ctx)
        except Exception:  # noqa: BLE001
            result, error = None, traceback.format_exc()
        else:
            error = None
        finally:
            if self.gate is not None:
                self.gate.release()
        done(result, error)

    def _finish_task(
        self, job: _SiteJob | None, msg: TaskAssignment, started: float,
        result: FLModel | None, error: str | None,
    ) -> None:
        if error is None:
            try:
                if not isinstance(result, FLModel):
                    raise TypeError(f"the task's result is {type(result).__name__}, not an FLModel")
                for f in _matching(job.result_filters, msg.task_name) if job else []:
                    result = f.process(result, job.ctx)
            except Exception:  # noqa: BLE001
                result, error = None, traceback.format_exc()
        seconds = time.monotonic() - started
        if error is not None and job is not None:
            job.ctx.logger.error(f"task '{msg.task_name}' failed:\n{error}")
        out = TaskResult(msg.task_id, msg.job_id, self.name, error is None,
                         result if error is None else None, error, seconds)
        try:
            self._retried(lambda: self.transport.submit_result(out), f"result of task {msg.task_id}")
        except TransportError as e:
            (job.ctx.logger if job else self.logger).warning(f"result not accepted: {e}")

    def _end_job(self, job_id: str, status: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        job.ctx.end_status = status
        job.ctx.abort_event.set()
        for _, ex in job.executors:
            try:
                ex.stop(job.ctx)
                self._ending.append((ex, job.ctx))
            except Exception:  # noqa: BLE001
                job.ctx.logger.error(f"executor stop failed:\n{traceback.format_exc()}")
        if job.worker is not None:
            job.worker.put(None)
        job.ctx.logger.info(f"job {job_id} ended on {self.name}: {status}")
        log = job.ctx.workspace / "log.txt"
        self.sink.ship_now(log)  # the server has it all as the part ends
        try:
            self.report_job(job_id, JobState.FINISHED)
        except TransportError:
            pass
        # what its scripts still print as they return goes too, for a while (as the server listens)
        self.sink.unship(log, after=LOG_SHIP_GRACE)


class SitePump:
    """Feeds many agents that share one transport from a single loop (the simulator's sites)."""

    def __init__(self, transport: SiteTransport, agents: list[SiteAgent], poll_timeout: float = 1.0):
        self.transport = transport
        self.agents = {a.name: a for a in agents}
        self.poll_timeout = poll_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, register: bool = True) -> None:
        """Start the loop; with `register`, register every site first (a caller that already
        did, with its own retries, passes False)."""
        if register:
            for agent in self.agents.values():
                agent.register()
        self._thread = threading.Thread(target=self._loop, name="site-pump", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        names = set(self.agents)
        while not self._stop.is_set():
            try:
                batch = self.transport.poll_many(names, self.poll_timeout)
            except TransportError:
                if self._stop.is_set():
                    return
                time.sleep(0.2)
                continue
            for site, msg in batch:
                self.agents[site].handle(msg)

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
