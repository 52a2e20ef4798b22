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
    remote = _remote_session()
    if remote is not None:
        return remote
    raise RuntimeError(
        "runtime.client: this code is not running as a site's script; run the job with "
        "`flshell sim JOB_FOLDER` (or on a site) and call flare.init() first"
        if not unique else
        "runtime.client: called from a thread the runtime did not start, with several sites in "
        "this process; call flare API functions from the script's own thread"
    )


_remote: Any = None


def _remote_session():
    """The session of a script launched in its own process by its site (launch_external_process)."""
    global _remote
    if _remote is None:
        from runtime.client.remote import RemoteSession

        with _active_lock:
            if _remote is None:
                _remote = RemoteSession.from_env()
    return _remote


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


def log(key: str, value: Any, data_type: str = "scalar", global_step: int | None = None,
        **kwargs: Any) -> None:
    """Record a scalar metric for this site; it reaches the server's TensorBoard files."""
    from runtime.client.tracking import SummaryWriter

    if data_type != "scalar":
        raise ValueError(f"flare.log: only data_type='scalar' is supported, got {data_type!r}")
    s = _session()
    writer = getattr(s, "_log_writer", None)
    if writer is None:  # one per site, so steps count on across calls
        writer = s._log_writer = SummaryWriter()
    writer.add_scalar(key, value, global_step=global_step)


def _record_metric(record: dict[str, Any]) -> None:
    """Buffer one tracked metric record of the calling site (used by SummaryWriter)."""
    _session().record_metric(record)


def _flush_metrics() -> None:
    _session().flush_metrics()
