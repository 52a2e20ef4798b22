"""ScriptSession: the bridge between a site's task loop and the user's script (Client API)."""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from runtime.model import FLModel, ParamsType

Done = Callable[[FLModel | None, str | None], None]  # (result, error): exactly one is None


class ScriptFailed(RuntimeError):
    """The script raised, exited or stopped answering before it sent a result."""


class _Task:
    __slots__ = ("name", "model", "prepare", "done", "gate", "holds_gate", "finished")

    def __init__(self, name: str, prepare: Callable[[], FLModel], done: Done,
                 gate: threading.Semaphore | None):
        self.name, self.prepare, self.done, self.gate = name, prepare, done, gate
        self.model: FLModel | None = None
        self.holds_gate = False
        self.finished = False


class ScriptSession:
    """One site's view of one job. The site delivers a task with a completion callback; the
    script (on its own thread) takes it with receive() and answers with send(), which completes
    the task on the script's thread. No site thread waits for the script."""

    def __init__(self, site: str, job_id: str, info: dict[str, Any], logger: Any = None) -> None:
        self.site = site
        self.job_id = job_id
        self.info = dict(info)
        self.logger = logger
        self._cond = threading.Condition()
        self._incoming: _Task | None = None
        self._current: _Task | None = None
        self._ended = False
        self._script_done = False
        self._script_error: str | None = None
        self._metrics: list[dict[str, Any]] = []
        self._metrics_lock = threading.Lock()
        self.ship_metrics: Callable[[list[dict[str, Any]]], None] | None = None
        self.send_diff = False  # params_transfer_type DIFF: send params - received params

    # ---- tracked metrics ---------------------------------------------------------------------

    def record_metric(self, record: dict[str, Any]) -> None:
        with self._metrics_lock:
            self._metrics.append(record)

    def flush_metrics(self) -> None:
        """Ship what the script recorded (called at each result, at the end, and on flush())."""
        with self._metrics_lock:
            batch, self._metrics = self._metrics, []
        if batch and self.ship_metrics is not None:
            self.ship_metrics(batch)

    # ---- site side ---------------------------------------------------------------------------

    def deliver(
        self, task_name: str, prepare: Callable[[], FLModel], done: Done,
        gate: threading.Semaphore | None = None,
    ) -> None:
        """Queue a task for the script; `prepare()` makes its model when the script takes it,
        `done` is called once with its result or an error. With `gate`, the script holds a slot
        of it from receive() until send()."""
        task = _Task(task_name, prepare, done, gate)
        with self._cond:
            stale = [t for t in (self._incoming, self._current) if t is not None]
            self._incoming, self._current = task, None
            early = self._script_done
            self._cond.notify_all()
        for t in stale:
            self._finish(t, None, "superseded by a newer task before the script answered")
        if early:
            self._fail_pending(self._exit_message())

    def end(self) -> None:
        """The job is over: is_running() turns False and a task still pending fails."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        self._fail_pending("the job ended before the script answered")

    def script_finished(self, error: str | None) -> None:
        try:
            self.flush_metrics()
        except Exception:  # noqa: BLE001
            pass
        with self._cond:
            self._script_done = True
            self._script_error = error
            self._cond.notify_all()
        self._fail_pending(self._exit_message())

    def _exit_message(self) -> str:
        if self._script_error:
            return self._script_error
        return "the script exited without sending a result"

    def _fail_pending(self, error: str) -> None:
        with self._cond:
            pending = [t for t in (self._incoming, self._current) if t is not None]
            self._incoming = self._current = None
        for t in pending:
            self._finish(t, None, f"task '{t.name}': {error}" if "Traceback" not in error else error)

    def _finish(self, task: _Task, result: FLModel | None, error: str | None) -> None:
        if task.finished:
            return
        task.finished = True
        try:
            self.flush_metrics()  # a round's curves reach the server with its result
        except Exception:  # noqa: BLE001 - losing a metric must not lose the result
            pass
        try:
            task.done(result, error)
        finally:  # after the result is handed over: -t bounds results in flight too
            task.model = None
            if task.holds_gate and task.gate is not None:
                task.holds_gate = False
                task.gate.release()

    @property
    def script_done(self) -> bool:
        return self._script_done

    @property
    def script_error(self) -> str | None:
        return self._script_error

    # ---- script side -------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True while the job goes on; waits for the next task or the job's end to decide."""
        with self._cond:
            self._cond.wait_for(lambda: self._current or self._incoming or self._ended)
            return bool(self._current or self._incoming)

    def receive(self, timeout: float | None = None) -> FLModel | None:
        """The current task's model; None when the job ended (or `timeout` passed)."""
        with self._cond:
            if self._current is not None:
                return self._current.model
            self._cond.wait_for(lambda: self._incoming or self._ended, timeout)
            task = self._incoming
            if task is None:
                return None
        if task.gate is not None:  # -t: at most T sites work at once
            task.gate.acquire()
            task.holds_gate = True
        with self._cond:
            if self._incoming is not task:  # superseded or failed while waiting for the gate
                if task.holds_gate:
                    task.holds_gate = False
                    task.gate.release()
                return None if self._ended else self.receive(timeout)
            self._current, self._incoming = task, None
        try:
            task.model = task.prepare()
        except Exception:  # noqa: BLE001 - a data filter or the transport failed: fail the task
            with self._cond:
                if self._current is task:
                    self._current = None
            self._finish(task, None, traceback.format_exc())
            return None if self._ended else self.receive(timeout)
        return task.model

    def send(self, model: FLModel) -> None:
        if not isinstance(model, FLModel):
            raise TypeError(f"flare.send() takes an FLModel, got {type(model).__name__}")
        with self._cond:
            task = self._current
            if task is None and self._ended:
                return  # the job ended (or was aborted) while the script worked: nothing to answer
            if task is None:
                raise RuntimeError("flare.send() called with no task: call flare.receive() first")
            self._current = None
        if self.send_diff and model.params_type == ParamsType.FULL and model.params:
            model = _as_diff(model, (task.model.params if task.model else None) or {})
        self._finish(task, model, None)

    @property
    def task_name(self) -> str | None:
        cur = self._current or self._incoming
        return cur.name if cur else None


def _as_diff(model: FLModel, received: dict[str, Any]) -> FLModel:
    """The same model with params replaced by params - received (keys absent from the
    received model are sent whole)."""
    diff = {}
    for key, value in model.params.items():
        base = received.get(key)
        diff[key] = value - base.to(value.dtype) if hasattr(value, "detach") and base is not None \
            else (value - base if base is not None else value)
    out = model.copy_meta()
    out.params, out.params_type = diff, ParamsType.DIFF
    return out
