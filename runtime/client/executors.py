"""Executors: what a site runs for a task. ScriptExecutor runs a Client API script."""

from __future__ import annotations

import _thread
import builtins
import os
import shlex
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from runtime.client import threadio
from runtime.client.api import bind_session
from runtime.client.session import Done, ScriptFailed, ScriptSession
from runtime.jobs import App, custom_imports
from runtime.jobs.errors import ArgError
from runtime.model import FLModel
from runtime.wire.convert import convert_params


@dataclass
class SiteJobContext:
    """What an executor sees of its site and job."""

    site: str
    job_id: str
    app: App
    workspace: Path
    logger: Any
    abort_event: threading.Event
    components: Any = None
    end_status: str | None = None  # how the job ended on the server, once it has
    info: dict[str, Any] = field(default_factory=dict)
    log_write: Any = None  # callable(text) writing to the site's log
    ship_metrics: Any = None  # callable(records) sending tracked metrics to the server


class Executor:
    """Subclass for a site-side task handler that is not a Client API script."""

    def start(self, ctx: SiteJobContext) -> None:
        """The job starts on this site."""

    def execute(self, task_name: str, model: FLModel, ctx: SiteJobContext) -> FLModel:
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")

    def submit(
        self, task_name: str, prepare: Callable[[], FLModel], ctx: SiteJobContext, done: Done,
        gate: threading.Semaphore | None,
    ) -> bool:
        """Start the task without blocking and call `done(result, error)` when it ends;
        `prepare()` gives the task's model (call it when work starts, inside `gate`).

        Return False (the default) to have the agent run `execute()` on a worker thread."""
        return False

    def stop(self, ctx: SiteJobContext) -> None:
        """The job ended on this site: let go of it without waiting."""

    def join(self, ctx: SiteJobContext, timeout: float) -> bool:
        """Wait up to `timeout` for what stop() ended; True once it is over."""
        return True


_code_cache: dict[tuple[str, float], Any] = {}
_code_lock = threading.Lock()


def run_script(path: Path) -> None:
    """Run a script as `__main__` on this thread, like `python script.py` would.

    Unlike runpy.run_path it touches no process-wide state (sys.modules["__main__"],
    sys.argv), so many sites can run scripts at once; the compiled code is shared.
    """
    key = (str(path), os.stat(path).st_mtime)
    with _code_lock:
        code = _code_cache.get(key)
    if code is None:
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        with _code_lock:
            _code_cache[key] = code
    namespace = {
        "__name__": "__main__", "__file__": str(path), "__builtins__": builtins,
        "__package__": None, "__spec__": None, "__loader__": None, "__cached__": None,
        "__doc__": None,
    }
    exec(code, namespace)


def _user_traceback(e: BaseException, script: Path) -> str:
    """The traceback from the script's own frames on (the runtime's frames above it are noise)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != str(script):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb or e.__traceback__))


def find_script(app: App, script: str) -> Path:
    """The script named in the config: looked up in custom/, then the app, then the job."""
    candidates = []
    if app.custom_dir is not None:
        candidates.append(app.custom_dir / script)
    candidates += [app.root / script, app.root.parent / script]
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(str(c.relative_to(app.root.parent)) for c in candidates)
    raise ArgError("script", f"a file in the app (looked for {looked})", script)


class ScriptExecutor(Executor):
    """Runs the user's Client API script (`import runtime.client as flare`) for a site.

    In-process, the script runs on its own thread with its own site context, argv and output
    (printed lines go to the site log), so 100 sites in one process each see their own name.

    Args:
        script: path of the script, relative to the app's custom/ folder (NVFlare:
            task_script_path).
        script_args: command line given to the script as sys.argv[1:] (task_script_args).
        launch_external_process: run the script in its own Python process.
        params_transfer_type: "DIFF" sends the change from the received model (computed here
            when the script sends FULL params), "FULL" the params as the script sends them.
        params_exchange_format: "torch" hands the script torch tensors whatever the server
            keeps, "numpy" numpy arrays; null (default) passes params as they come.
    """

    def __init__(
        self,
        script: str | None = None,
        script_args: str = "",
        launch_external_process: bool = False,
        task_script_path: str | None = None,
        task_script_args: str | None = None,
        params_transfer_type: str = "FULL",
        params_exchange_format: str | None = None,
    ) -> None:
        if params_transfer_type not in ("FULL", "DIFF"):
            raise ArgError("params_transfer_type", '"FULL" or "DIFF"', params_transfer_type)
        if params_exchange_format not in (None, "numpy", "torch"):
            raise ArgError("params_exchange_format", '"numpy", "torch" or null', params_exchange_format)
        self.params_transfer_type = params_transfer_type
        self.params_exchange_format = params_exchange_format
        script = script or task_script_path
        if not script:
            raise ArgError("script", "the path of the site's training script", script)
        self.launch_external_process = bool(launch_external_process)
        self.script = script
        self.script_args = task_script_args if task_script_args is not None else script_args
        try:
            self.argv_tail = shlex.split(self.script_args or "")
        except ValueError as e:
            raise ArgError("script_args", f"a shell-like argument string ({e})", self.script_args) from None
        self.session: ScriptSession | None = None
        self._finished: threading.Event | None = None

    def validate(self, app: App) -> None:
        find_script(app, self.script)

    def start(self, ctx: SiteJobContext) -> None:
        path = find_script(ctx.app, self.script)
        self.session = ScriptSession(ctx.site, ctx.job_id, ctx.info, ctx.logger)
        self.session.ship_metrics = ctx.ship_metrics
        self.session.send_diff = self.params_transfer_type == "DIFF"
        self._finished = threading.Event()
        if self.launch_external_process:
            from runtime.client.external import ExternalScript

            ext = ExternalScript(self.session, path, self.argv_tail, ctx.app.custom_dir,
                                 ctx.workspace, ctx.log_write)
            self._finished = ext.finished
            self._external = ext
            ext.start()
            return
        # A raw thread: threading.Thread.start() waits until the new thread runs, which costs
        # up to a GIL switch interval per site while other sites' scripts are busy starting.
        _thread.start_new_thread(self._run_script, (path, ctx))

    def _run_script(self, path: Path, ctx: SiteJobContext) -> None:
        assert self.session is not None
        ctx.workspace.mkdir(parents=True, exist_ok=True)  # here, in parallel, not on the pump
        bind_session(self.session)
        threadio.bind([str(path), *self.argv_tail], ctx.log_write)
        error = None
        try:
            with custom_imports(ctx.app):
                run_script(path)
        except SystemExit as e:
            if e.code not in (None, 0):
                error = f"{path.name} called sys.exit({e.code!r})"
        except BaseException as e:  # noqa: BLE001 - reported as the site's task failure
            error = _user_traceback(e, path)
            ctx.logger.error(f"{path.name} raised:\n{error}")
        finally:
            threadio.unbind()
            bind_session(None)
            self.session.script_finished(error)
            self._finished.set()

    def submit(
        self, task_name: str, prepare: Callable[[], FLModel], ctx: SiteJobContext, done: Done,
        gate: threading.Semaphore | None,
    ) -> bool:
        assert self.session is not None, "start() was not called"
        fmt = self.params_exchange_format
        if fmt is not None:
            def prepare_as(inner=prepare) -> FLModel:
                return convert_params(inner(), fmt)

            prepare = prepare_as
        self.session.deliver(task_name, prepare, done, gate)
        return True

    def execute(self, task_name: str, model: FLModel, ctx: SiteJobContext) -> FLModel:
        """Blocking form of submit(), for callers that want one."""
        box: list = []
        finished = threading.Event()
        self.submit(task_name, lambda: model, ctx,
                    lambda r, e: (box.append((r, e)), finished.set()), None)
        while not finished.wait(0.5):
            if ctx.abort_event.is_set():
                raise ScriptFailed("aborted while the script worked on the task")
        result, error = box[0]
        if error is not None:
            raise ScriptFailed(error)
        return result

    def stop(self, ctx: SiteJobContext) -> None:
        if self.session is not None:
            self.session.end()  # is_running() turns False; the script returns on its own
        ext = getattr(self, "_external", None)
        if ext is not None:  # a script process busy in its own code does not: end it after a
            # grace, short for an aborted or failed job, long enough after a completed one for
            # the script's own wrap-up (saving, a last evaluation)
            ext.kill_after(self.EXTERNAL_GRACE if ctx.end_status != "COMPLETED" else 60.0)

    EXTERNAL_GRACE = 3.0  # seconds a script process gets to return after its job ended

    def join(self, ctx: SiteJobContext, timeout: float) -> bool:
        if self._finished is None or self._finished.wait(timeout):
            return True
        ctx.logger.warning(f"the script did not return within {timeout:g}s after the job ended")
        return False
