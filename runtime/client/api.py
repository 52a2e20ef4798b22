"""The Client API: `import runtime.client as flare` inside a site's training script."""

from __future__ import annotations

import threading
from typing import Any

from runtime.client.session import ScriptSession
from runtime.model import FLModel

_local = threading.local()
_active: dict[int, ScriptSession] = {}
_active_lock = threading.Lock()


def bind_session(session: ScriptSession | None) -> None:
    """Make `session` the one the calling thread's flare.* calls use (the runtime calls this)."""
    _local.session = session
    with _active_lock:
        if session is None:
            _active.pop(threading.get_ident(), None)
        else:
            _active[threading.get_ident()] = session


def _session() -> ScriptSession:
    session = getattr(_local, "session", None)
    if session is not None:
        return session
    with _active_lock:
        unique = {id(s): s for s in _active.values()}
    if len(unique) == 1:  # a thread the script started itself, with one site in the process
        return next(iter(unique.values()))
    raise RuntimeError(
        "runtime.client: this code is not running as a site's script; run the job with "
        "`flshell sim JOB_FOLDER` (or on a site) and call flare.init() first"
        if not unique else
        "runtime.client: called from a thread the runtime did not start, with several sites in "
        "this process; call flare API functions from the script's own thread"
    )


def init(rank: str | None = None, config_file: str | None = None) -> None:
    """Connect the script to its site. Arguments exist for NVFlare compatibility."""
    _session()


def is_running() -> bool:
    """True while the job goes on; False once the server ended it."""
    return _session().is_running()


def receive(timeout: float | None = None) -> FLModel | None:
    """The model sent with the current task; None when the job has ended."""
    return _session().receive(timeout)


def send(model: FLModel, clear_cache: bool = True) -> None:
    """Return the result of the current task to the server."""
    _session().send(model)


def system_info() -> dict[str, Any]:
    """{"site_name", "job_id", "workspace", "gpu"} for the calling script."""
    s = _session()
    return {"site_name": s.site, "job_id": s.job_id, **s.info}


def get_site_name() -> str:
    return _session().site


def get_job_id() -> str:
    return _session().job_id


def get_task_name() -> str | None:
    return _session().task_name


def is_train() -> bool:
    return get_task_name() == "train"


def is_evaluate() -> bool:
    return get_task_name() in ("validate", "evaluate")


def is_submit_model() -> bool:
    return get_task_name() == "submit_model"


def log(key: str, value: Any, data_type: str = "scalar", **kwargs: Any) -> None:
    """Record a metric for this site; it goes to the site's log."""
    s = _session()
    if s.logger is not None:
        s.logger.info(f"metric {key}={value} ({data_type}) {kwargs or ''}".rstrip())
