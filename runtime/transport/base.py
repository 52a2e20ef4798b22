"""The transport seam: messages between sites and the server, and the interface that carries them.

The server side is one plain handler (`FLHandler`, implemented by `ServerEngine`); a transport
carries a site's calls to it. The in-process transport calls the handler directly; the gRPC one
(next issue) serialises the same messages. Both must pass `tests/contract/`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Union

from runtime.model import FLModel


class TransportError(RuntimeError):
    """A call could not be carried or was refused by the server (unknown site, bad task id...).

    `retryable`: the call did not reach a server that could answer it (connection refused or
    dropped, deadline passed, server busy or shutting down): the same call may succeed later.
    A refusal (unknown site, bad task id, invalid input) is not retryable."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class NotRegistered(TransportError):
    """The server does not know the calling site (it restarted, or an operator removed the
    site): register again. A gRPC transport carries it as NOT_FOUND."""


class ServerClosing(TransportError):
    """The server is shutting down: the same call may succeed against the next server. A gRPC
    transport carries it as UNAVAILABLE."""

    def __init__(self, message: str = "the server is shutting down") -> None:
        super().__init__(message, retryable=True)


@dataclass
class JobStart:
    """Server -> site: deploy this job's client app and report when ready."""

    job_id: str
    job_name: str
    app_name: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskAssignment:
    """Server -> site: run `task_name` on `model` and submit a `TaskResult` with this task_id."""

    task_id: str
    job_id: str
    task_name: str
    model: FLModel | None
    timeout: float | None = None
    materialize: Callable[[], FLModel] | None = field(default=None, repr=False, compare=False)

    def take_model(self) -> FLModel:
        """The task's model, once. A transport may defer making it (the in-process one copies
        the server's model only when the site starts work, so idle sites hold no copy)."""
        if self.model is None and self.materialize is not None:
            make, self.materialize = self.materialize, None
            return make()  # not kept here: the message may outlive the task
        return self.model


@dataclass
class JobEnd:
    """Server -> site: the job is over; stop its executors and free what it holds."""

    job_id: str
    status: str


@dataclass
class SiteCommand:
    """Server -> site: an operator's command for the site process ("shutdown" or "restart")."""

    action: str


SiteMessage = Union[JobStart, TaskAssignment, JobEnd, SiteCommand]


@dataclass
class TaskResult:
    """Site -> server: the outcome of one task."""

    task_id: str
    job_id: str
    site: str
    ok: bool
    model: FLModel | None = None
    error: str | None = None
    seconds: float = 0.0


class JobState:
    """What a site reports about its part of a job."""

    READY = "ready"
    FAILED = "failed"
    FINISHED = "finished"


class FLHandler(Protocol):
    """The server's site-facing calls, free of any transport."""

    def register(self, site: str, info: dict[str, Any]) -> dict[str, Any]: ...

    def heartbeat(self, site: str, info: dict[str, Any]) -> dict[str, Any]: ...

    def poll(self, site: str, timeout: float, job_id: str | None = None) -> SiteMessage | None: ...

    def poll_many(self, sites: set[str], timeout: float) -> list[tuple[str, SiteMessage]]: ...

    def submit_result(self, result: TaskResult) -> None: ...

    def expect_result(self, task_id: str, site: str) -> None:
        """TransportError unless `site` owes a result for `task_id` (checked before a result's
        model is read: nobody uploads a model for a task that is not theirs)."""

    def report_job(self, site: str, job_id: str, state: str, detail: str | None = None) -> None: ...

    def log_metrics(self, site: str, job_id: str, records: list[dict[str, Any]]) -> None: ...

    def get_job(self, site: str, job_id: str) -> bytes: ...

    def ship_log(self, site: str, job_id: str, text: str) -> None: ...

    def goodbye(self, site: str) -> None: ...


class SiteTransport(abc.ABC):
    """A site's connection to the server. One instance may serve many sites (the simulator)."""

    @abc.abstractmethod
    def register(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        """Announce the site; returns server settings (e.g. heartbeat interval)."""

    @abc.abstractmethod
    def heartbeat(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        """Report liveness and load; returns server hints."""

    @abc.abstractmethod
    def poll(self, site: str, timeout: float, job_id: str | None = None) -> SiteMessage | None:
        """Wait up to `timeout` seconds for the next message for this site; None if none came.
        With `job_id`: the next message for the process that runs that job of the site."""

    def poll_many(self, sites: set[str], timeout: float) -> list[tuple[str, SiteMessage]]:
        """Messages for any of `sites` (a host running many sites polls once for all of them).

        The default polls each site in turn; transports that can wait on many do better."""
        out: list[tuple[str, SiteMessage]] = []
        for site in sorted(sites):
            msg = self.poll(site, 0)
            while msg is not None:
                out.append((site, msg))
                msg = self.poll(site, 0)
        if not out and timeout > 0:
            import time

            time.sleep(min(timeout, 0.05))
        return out

    @abc.abstractmethod
    def submit_result(self, result: TaskResult) -> None:
        """Hand a task's result to the server. Raises TransportError if the server refuses it."""

    @abc.abstractmethod
    def report_job(self, site: str, job_id: str, state: str, detail: str | None = None) -> None:
        """Tell the server the site's job is ready, failed (with detail) or finished."""

    @abc.abstractmethod
    def log_metrics(self, site: str, job_id: str, records: list[dict[str, Any]]) -> None:
        """Ship tracked metrics ({"tag", "value", "step", "wall_time"} records) to the server."""

    @abc.abstractmethod
    def get_job(self, site: str, job_id: str) -> bytes:
        """The folder of a job this site was told to start, as a zip (runtime.jobs.upload)."""

    @abc.abstractmethod
    def ship_log(self, site: str, job_id: str, text: str) -> None:
        """Send log text of the site's part of a job to the server, which keeps it per site."""

    @abc.abstractmethod
    def goodbye(self, site: str) -> None:
        """The site is leaving on purpose."""

    def close(self) -> None:
        """Release connections. Idempotent."""
