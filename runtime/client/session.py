"""ScriptSession: the bridge between a site's task loop and the user's script (Client API)."""

from __future__ import annotations

import threading
from typing import Any

from runtime.model import FLModel


class ScriptFailed(RuntimeError):
    """The script raised, exited or stopped answering before it sent a result."""


class ScriptSession:
    """One site's view of one job, shared by the site (deliver/wait_result/end) and the script
    (is_running/receive/send), each on its own thread."""

    def __init__(self, site: str, job_id: str, info: dict[str, Any], logger: Any = None) -> None:
        self.site = site
        self.job_id = job_id
        self.info = dict(info)
        self.logger = logger
        self._cond = threading.Condition()
        self._incoming: tuple[str, FLModel] | None = None
        self._current: tuple[str, FLModel] | None = None
        self._result: FLModel | None = None
        self._ended = False
        self._script_done = False
        self._script_error: str | None = None

    # ---- site side ---------------------------------------------------------------------------

    def deliver(self, task_name: str, model: FLModel) -> None:
        with self._cond:
            self._incoming = (task_name, model)
            self._result = None
            self._cond.notify_all()

    def wait_result(self, abort: threading.Event | None = None, poll: float = 0.5) -> FLModel:
        with self._cond:
            while self._result is None:
                if self._script_done:
                    task = (self._current or self._incoming or ("?",))[0]
                    self._incoming = self._current = None
                    if self._script_error:
                        raise ScriptFailed(self._script_error)
                    raise ScriptFailed(
                        f"the script exited without sending a result for task '{task}'"
                    )
                if abort is not None and abort.is_set():
                    raise ScriptFailed("aborted while the script worked on the task")
                self._cond.wait(poll)
            result, self._result = self._result, None
            return result

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def script_finished(self, error: str | None) -> None:
        with self._cond:
            self._script_done = True
            self._script_error = error
            self._cond.notify_all()

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
            if self._current is None:
                self._cond.wait_for(lambda: self._incoming or self._ended, timeout)
                if self._incoming is None:
                    return None
                self._current, self._incoming = self._incoming, None
            return self._current[1]

    def send(self, model: FLModel) -> None:
        if not isinstance(model, FLModel):
            raise TypeError(f"flare.send() takes an FLModel, got {type(model).__name__}")
        with self._cond:
            if self._current is None:
                raise RuntimeError("flare.send() called with no task: call flare.receive() first")
            self._result = model
            self._current = None
            self._cond.notify_all()

    @property
    def task_name(self) -> str | None:
        cur = self._current or self._incoming
        return cur[0] if cur else None
