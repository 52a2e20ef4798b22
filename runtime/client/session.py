"""ScriptSession: the bridge between a site's task loop and the user's script (Client API)."""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from runtime.model import FLModel

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

    @staticmethod
    def _finish(task: _Task, result: FLModel | None, error: str | None) -> None:
        if task.finished:
            return
        task.finished = True
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
            if task is None:
                raise RuntimeError("flare.send() called with no task: call flare.receive() first")
            self._current = None
        self._finish(task, model, None)

    @property
    def task_name(self) -> str | None:
        cur = self._current or self._incoming
        return cur.name if cur else None
