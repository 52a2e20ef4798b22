"""The site agent: registers, pulls messages, runs each job's executors, pushes results."""

from __future__ import annotations

import fnmatch
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from runtime.client.executors import Executor, SiteJobContext
from runtime.client.sitelog import LogSink, site_logger
from runtime.jobs import App, ComponentBuilder, JobError, custom_imports
from runtime.model import FLModel
from runtime.transport.base import (
    JobEnd,
    JobStart,
    JobState,
    SiteTransport,
    TaskAssignment,
    TaskResult,
    TransportError,
)

AppSource = Callable[[JobStart], App]


@dataclass
class _SiteJob:
    """A job on this site; its tasks run one after another on the job's own thread, so the
    agent keeps polling (and can deliver an abort) while a task runs."""

    ctx: SiteJobContext
    executors: list[tuple[list[str], Executor]]
    data_filters: list[tuple[list[str], list[Any]]] = field(default_factory=list)
    result_filters: list[tuple[list[str], list[Any]]] = field(default_factory=list)
    tasks: "queue.SimpleQueue[TaskAssignment | None]" = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None

    def executor_for(self, task: str) -> Executor | None:
        for patterns, ex in self.executors:
            if any(fnmatch.fnmatchcase(task, p) for p in patterns):
                return ex
        return None


def _matching(filters: list[tuple[list[str], list[Any]]], task: str) -> list[Any]:
    out: list[Any] = []
    for patterns, fs in filters:
        if any(fnmatch.fnmatchcase(task, p) for p in patterns):
            out.extend(fs)
    return out


class SiteAgent:
    """One site. `run()` loops until `stop()`; `gate` bounds how many sites execute at once."""

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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.logger = site_logger(f"site.{name}", log_sink.writer(self.workspace / "log.txt"))

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.transport.register(self.name, self.info)
        self._thread = threading.Thread(target=self.run, name=f"{self.name}-agent", daemon=True)
        self._thread.start()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.transport.poll(self.name, self.poll_timeout)
            except TransportError as e:
                if self._stop.is_set():
                    break
                self.logger.warning(f"poll failed: {e}")
                time.sleep(0.5)
                continue
            if msg is None:
                continue
            if isinstance(msg, JobStart):
                self._start_job(msg)
            elif isinstance(msg, TaskAssignment):
                job = self.jobs.get(msg.job_id)
                if job is None:
                    self._run_task(msg)  # fails it: no such job here
                else:
                    job.tasks.put(msg)
            elif isinstance(msg, JobEnd):
                self._end_job(msg.job_id, msg.status)

    def request_stop(self) -> None:
        """Ask the loop to end at its next wake-up (use `stop()` to also wait and say goodbye)."""
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
        try:
            self.transport.goodbye(self.name)
        except TransportError:
            pass

    # ---- jobs --------------------------------------------------------------------------------

    def _start_job(self, msg: JobStart) -> None:
        job_dir = self.workspace / "jobs" / msg.job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        write = self.sink.writer(job_dir / "log.txt")
        logger = site_logger(f"{self.name}.{msg.job_id[:8]}", write)
        try:
            app = self.app_source(msg)
            cfg = app.client_config
            if cfg is None:
                raise JobError(f"app {app.name!r} has no client config (config_client.json)")
            ctx = SiteJobContext(
                site=self.name, job_id=msg.job_id, app=app, workspace=job_dir, logger=logger,
                abort_event=threading.Event(), info={**self.info, "workspace": str(job_dir)},
                log_write=write,
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
            self.transport.report_job(self.name, msg.job_id, JobState.FAILED, detail)
            return
        self.jobs[msg.job_id] = job
        job.thread = threading.Thread(
            target=self._task_loop, args=(job,), name=f"{self.name}-tasks", daemon=True
        )
        job.thread.start()
        logger.info(f"job {msg.job_id} ({msg.job_name}) ready on {self.name}")
        self.transport.report_job(self.name, msg.job_id, JobState.READY)

    def _task_loop(self, job: _SiteJob) -> None:
        while True:
            msg = job.tasks.get()
            if msg is None:
                return
            self._run_task(msg)

    def _run_task(self, msg: TaskAssignment) -> None:
        started = time.monotonic()
        job = self.jobs.get(msg.job_id)
        try:
            if job is None:
                raise RuntimeError(f"{self.name} has no running job {msg.job_id}")
            executor = job.executor_for(msg.task_name)
            if executor is None:
                raise RuntimeError(f"no executor on {self.name} handles task '{msg.task_name}'")
            if self.gate is not None:
                self.gate.acquire()
            try:
                model = msg.model
                for f in _matching(job.data_filters, msg.task_name):
                    model = f.process(model, job.ctx)
                result = executor.execute(msg.task_name, model, job.ctx)
                if not isinstance(result, FLModel):
                    raise TypeError(f"executor returned {type(result).__name__}, not an FLModel")
                for f in _matching(job.result_filters, msg.task_name):
                    result = f.process(result, job.ctx)
            finally:
                if self.gate is not None:
                    self.gate.release()
            out = TaskResult(msg.task_id, msg.job_id, self.name, True, result,
                             seconds=time.monotonic() - started)
        except Exception as e:  # noqa: BLE001 - the task fails, the site stays up
            text = str(e) if e.__class__.__name__ == "ScriptFailed" else traceback.format_exc()
            if job is not None:
                job.ctx.logger.error(f"task '{msg.task_name}' failed:\n{text}")
            out = TaskResult(msg.task_id, msg.job_id, self.name, False, None, text,
                             seconds=time.monotonic() - started)
        try:
            self.transport.submit_result(out)
        except TransportError as e:
            (job.ctx.logger if job else self.logger).warning(f"result not accepted: {e}")

    def _end_job(self, job_id: str, status: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        job.ctx.abort_event.set()
        job.tasks.put(None)
        if job.thread is not None and job.thread is not threading.current_thread():
            job.thread.join(timeout=10)
        for _, ex in job.executors:
            try:
                ex.stop(job.ctx)
            except Exception:  # noqa: BLE001
                job.ctx.logger.error(f"executor stop failed:\n{traceback.format_exc()}")
        job.ctx.logger.info(f"job {job_id} ended on {self.name}: {status}")
        try:
            self.transport.report_job(self.name, job_id, JobState.FINISHED)
        except TransportError:
            pass
