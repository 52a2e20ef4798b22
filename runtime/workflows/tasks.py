"""Task groups: one model sent to many sites, results matched by task id as they arrive.

Workflows import nothing from the server: a group talks to whatever dispatches tasks to sites
through `TaskDispatcher` (the server's engine is one)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from runtime.model import FLModel
from runtime.transport.base import TaskResult


class TaskDispatcher(Protocol):
    """What a task group needs of the server: queue a task for a site, stop waiting for one, and
    each site's liveness (CONNECTED, STALE, LOST, DISCONNECTED)."""

    def assign_task(self, job_id: str, site: str, task_name: str, model: FLModel,
                    timeout: float | None, on_result: Callable[[TaskResult], None],
                    task_id: str | None = None) -> str: ...

    def cancel_task(self, task_id: str) -> None: ...

    def site_statuses(self, sites: Iterable[str]) -> dict[str, str]: ...


class TaskGroupError(RuntimeError):
    """A group could not reach the responses it needed, or a result callback raised."""

    def __init__(self, message: str, sites: list[str] | None = None) -> None:
        super().__init__(message)
        self.sites = sites or []


@dataclass
class GroupOutcome:
    """What came back from a task group."""

    results: list[TaskResult] = field(default_factory=list)  # ok results (empty with a callback)
    ok_sites: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # site -> error text
    timed_out: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # no longer awaited (abort, or hopeless)
    seconds: float = 0.0


class TaskGroup:
    """Sends `model` as task `task_name` to `targets` and collects the results.

    With `callback`, each ok result is handed to it (serialised, in arrival order) and dropped,
    so memory stays O(model) however many sites report.
    """

    def __init__(
        self,
        engine: TaskDispatcher,
        job_id: str,
        task_name: str,
        model: FLModel,
        targets: list[str],
        timeout: float | None = None,
        callback: Callable[[TaskResult], None] | None = None,
    ) -> None:
        self._engine = engine
        self.job_id = job_id
        self.task_name = task_name
        self._model = model
        self.targets = list(targets)
        self.timeout = timeout
        self._callback = callback
        self._cond = threading.Condition()
        self._pending: dict[str, str] = {}  # task_id -> site
        self._callback_error: BaseException | None = None
        self.outcome = GroupOutcome()
        self._started = 0.0

    def dispatch(self) -> None:
        self._started = time.monotonic()
        ids = [uuid.uuid4().hex for _ in self.targets]
        with self._cond:  # recorded before dispatch: a fast site may answer at once
            self._pending.update(zip(ids, self.targets))
        for task_id, site in zip(ids, self.targets):
            self._engine.assign_task(
                self.job_id, site, self.task_name, self._model, self.timeout, self._on_result,
                task_id=task_id,
            )

    def _on_result(self, result: TaskResult) -> None:
        with self._cond:
            site = self._pending.pop(result.task_id, None)
            if site is None:
                return
            if not result.ok:
                self.outcome.failed[site] = result.error or "failed without an error message"
            elif self._callback is not None and self._callback_error is None:
                try:
                    self._callback(result)
                    self.outcome.ok_sites.append(site)
                except BaseException as e:  # noqa: BLE001 - surfaced to the controller
                    self._callback_error = e
                    self.outcome.failed[site] = f"aggregating its result failed: {e!r}"
            else:
                self.outcome.ok_sites.append(site)
                self.outcome.results.append(result)
            self._cond.notify_all()

    def wake(self) -> None:
        """Make a waiting `wait()` look at its abort event now (not at its next 0.5 s tick)."""
        with self._cond:
            self._cond.notify_all()

    def wait(self, min_responses: int, abort: threading.Event | None = None,
             wait_after_min: float | None = None) -> GroupOutcome:
        """Block until every target answered, or `min_responses` became unreachable, or the
        timeout passed, or `abort` was set. Once `min_responses` sites succeeded, the group
        stops waiting for sites that are no longer CONNECTED (STALE: their heartbeats stopped)
        and, with `wait_after_min`, for anyone after that many more seconds; those sites are
        reported failed with the reason. Raises TaskGroupError when fewer than
        `min_responses` sites succeeded."""
        deadline = None if self.timeout is None else self._started + self.timeout
        timed_out = False
        enough_at: float | None = None
        left_behind: dict[str, str] = {}
        with self._cond:
            while self._pending:
                if abort is not None and abort.is_set():
                    break
                if len(self.outcome.ok_sites) + len(self._pending) < min_responses:
                    break  # even if every pending site succeeds, it is not enough
                now = time.monotonic()
                if len(self.outcome.ok_sites) >= max(min_responses, 1):
                    enough_at = enough_at if enough_at is not None else now
                    left_behind = self._not_worth_waiting_for(now - enough_at, wait_after_min)
                    if left_behind:
                        break
                remaining = 0.5 if deadline is None else min(0.5, deadline - now)
                if remaining <= 0:
                    timed_out = True
                    break
                self._cond.wait(remaining)
            leftover = dict(self._pending)
            self._pending.clear()
        for task_id, site in leftover.items():
            self._engine.cancel_task(task_id)
            if site in left_behind:
                self.outcome.failed[site] = left_behind[site]
            elif timed_out:
                self.outcome.timed_out.append(site)
            else:
                self.outcome.cancelled.append(site)
        self.outcome.seconds = time.monotonic() - self._started
        if self._callback_error is not None:
            raise TaskGroupError(
                f"task '{self.task_name}': result callback failed: {self._callback_error!r}"
            ) from self._callback_error
        if abort is not None and abort.is_set():
            return self.outcome
        if len(self.outcome.ok_sites) < min_responses:
            raise TaskGroupError(self._shortfall(min_responses), self._bad_sites())
        return self.outcome

    def _not_worth_waiting_for(self, since_enough: float,
                               wait_after_min: float | None) -> dict[str, str]:
        """(enough results are in) The pending sites to stop waiting for, with why: all of
        them once `wait_after_min` has passed or when none of them is CONNECTED; else none."""
        pending = sorted(set(self._pending.values()))
        ok = len(self.outcome.ok_sites)
        if wait_after_min is not None and since_enough >= wait_after_min:
            why = (f"no result {wait_after_min:g}s after {ok} sites (enough) had answered: the "
                   "round went on without it (wait_time_after_min_received)")
            return {s: why for s in pending}
        statuses = self._engine.site_statuses(pending)
        if any(statuses.get(s) == "CONNECTED" for s in pending):
            return {}
        return {s: (f"{s} is {statuses.get(s, 'gone')} (its heartbeats stopped) and {ok} sites "
                    "had answered, enough for the round: it went on without it") for s in pending}

    def _bad_sites(self) -> list[str]:
        return sorted(self.outcome.failed) + sorted(self.outcome.timed_out)

    def _shortfall(self, min_responses: int) -> str:
        o = self.outcome
        parts = [
            f"task '{self.task_name}': {len(o.ok_sites)} of {len(self.targets)} sites succeeded, "
            f"{min_responses} required"
        ]
        if o.failed:
            parts.append("failed: " + ", ".join(sorted(o.failed)))
        if o.timed_out:
            parts.append(f"timed out after {self.timeout:g}s: " + ", ".join(sorted(o.timed_out)))
        return "; ".join(parts)
