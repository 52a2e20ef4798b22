"""In-process transport: sites in this process call the server handler directly.

Messages are detached on the way through (arrays copied, metadata round-tripped through JSON) so
a site can never alias or mutate the server's objects, and metadata that a real network could
not carry fails here too, the same way it would over gRPC.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from runtime.model import FLModel
from runtime.transport.base import (
    FLHandler,
    SiteMessage,
    SiteTransport,
    TaskAssignment,
    TaskResult,
    TransportError,
)


_SCALARS = (str, int, float, bool, type(None))


def _json_copy(value: Any, what: str) -> Any:
    if value is None:
        return None
    if type(value) is dict and all(
        type(k) is str and type(v) in _SCALARS for k, v in value.items()
    ):
        return dict(value)  # the common flat case: as JSON would give it back, without JSON
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise TransportError(f"{what} is not JSON-compatible: {e}") from None


def _meta_copy(value: Any, what: str, depth: int = 0) -> Any:
    """A copy of meta as the wire gives it back: JSON values, and arrays or tensors (which the
    wire carries as buffers, e.g. SCAFFOLD's control variates) copied."""
    if depth > 100:
        raise TransportError(f"{what} is nested too deeply")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise TransportError(f"{what}: key {k!r} is not a str")
            out[k] = _meta_copy(v, f"{what}[{k!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_meta_copy(v, f"{what}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray) or callable(getattr(value, "clone", None)):
        return _copy_array(value)
    if isinstance(value, np.generic):
        return value.item()
    return _json_copy(value, what)


def _copy_array(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    clone = getattr(value, "clone", None)  # a torch tensor, without importing torch
    if callable(clone):
        return clone()
    if isinstance(value, (int, float, complex, bool, np.generic)):
        return np.asarray(value).copy()
    raise TransportError(
        f"params values must be arrays or tensors, got {type(value).__name__}"
    )


def detach_model(model: FLModel | None) -> FLModel | None:
    """A deep, transport-faithful copy of `model`."""
    if model is None:
        return None
    params = None
    if model.params is not None:
        params = {}
        for key, value in model.params.items():
            if not isinstance(key, str):
                raise TransportError(f"params keys must be str, got {key!r}")
            try:
                params[key] = _copy_array(value)
            except TransportError as e:
                raise TransportError(f'params["{key}"]: {e}') from None
    return FLModel(
        params=params,
        params_type=model.params_type,
        metrics=_json_copy(model.metrics, "FLModel.metrics"),
        meta=_meta_copy(model.meta, "FLModel.meta") or {},
        current_round=model.current_round,
        total_rounds=model.total_rounds,
        start_round=model.start_round,
        optimizer_params=_json_copy(model.optimizer_params, "FLModel.optimizer_params"),
    )


def _detach_message(msg: SiteMessage | None) -> SiteMessage | None:
    if isinstance(msg, TaskAssignment):
        shared = msg.model
        return TaskAssignment(
            task_id=msg.task_id,
            job_id=msg.job_id,
            task_name=msg.task_name,
            model=None,
            timeout=msg.timeout,
            materialize=lambda: detach_model(shared),
        )
    return msg


class InProcTransport(SiteTransport):
    """Carries site calls to an `FLHandler` living in the same process."""

    def __init__(self, handler: FLHandler) -> None:
        self._handler = handler
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise TransportError("transport is closed")

    def register(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        self._check()
        return self._handler.register(site, _json_copy(info, "site info") or {})

    def heartbeat(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        self._check()
        return self._handler.heartbeat(site, _json_copy(info, "heartbeat info") or {})

    def poll(self, site: str, timeout: float, job_id: str | None = None) -> SiteMessage | None:
        self._check()
        return _detach_message(self._handler.poll(site, timeout, job_id))

    def poll_many(self, sites: set[str], timeout: float) -> list[tuple[str, SiteMessage]]:
        self._check()
        return [(s, _detach_message(m)) for s, m in self._handler.poll_many(sites, timeout)]

    def submit_result(self, result: TaskResult) -> None:
        self._check()
        try:
            model = detach_model(result.model)
        except TransportError as e:
            # What a real wire could not carry fails the task, as it would over gRPC.
            model, result = None, TaskResult(
                task_id=result.task_id, job_id=result.job_id, site=result.site, ok=False,
                error=f"result could not be sent: {e}", seconds=result.seconds,
            )
        self._handler.submit_result(
            TaskResult(
                task_id=result.task_id,
                job_id=result.job_id,
                site=result.site,
                ok=result.ok,
                model=model,
                error=result.error,
                seconds=result.seconds,
            )
        )

    def report_job(self, site: str, job_id: str, state: str, detail: str | None = None) -> None:
        self._check()
        self._handler.report_job(site, job_id, state, detail)

    def log_metrics(self, site: str, job_id: str, records: list[dict[str, Any]]) -> None:
        self._check()
        self._handler.log_metrics(site, job_id, _json_copy(records, "metric records"))

    def get_job(self, site: str, job_id: str) -> bytes:
        self._check()
        return bytes(self._handler.get_job(site, job_id))

    def ship_log(self, site: str, job_id: str, text: str) -> None:
        self._check()
        self._handler.ship_log(site, job_id, str(text))

    def goodbye(self, site: str) -> None:
        if not self._closed:
            self._handler.goodbye(site)

    def close(self) -> None:
        self._closed = True
