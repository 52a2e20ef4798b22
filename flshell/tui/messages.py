"""The messages the TUI talks in: the feed tells the app about the connection, the app tells the
screens what changed, actions report how they went. Tests assert on these before snapshots."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from flshell.tui.data import Snapshot


class Connected(Message):
    """The feed (re)connected and loaded a snapshot; `attempts` failed tries came before. The
    UI sets `applied` once the snapshot is on screen: the feed queues none of this watch's
    events before that, so they are always applied after the snapshot they follow."""

    def __init__(self, snapshot: "Snapshot", attempts: int = 0) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.attempts = attempts
        self.applied = threading.Event()


class SnapshotLoaded(Message):
    """A periodic (or forced) reload of jobs and sites while connected."""

    def __init__(self, snapshot: "Snapshot") -> None:
        super().__init__()
        self.snapshot = snapshot


class ConnectionLost(Message):
    """The watch failed or the server could not be reached; retry number `attempt` follows
    in `retry_in` seconds."""

    def __init__(self, error: str, attempt: int, retry_in: float) -> None:
        super().__init__()
        self.error = error
        self.attempt = attempt
        self.retry_in = retry_in


class JobsUpdated(Message):
    """These jobs changed (added, removed or updated) in the app's state."""

    def __init__(self, job_ids: frozenset[str]) -> None:
        super().__init__()
        self.job_ids = job_ids


class SitesUpdated(Message):
    """These sites changed status, or appeared."""

    def __init__(self, names: frozenset[str]) -> None:
        super().__init__()
        self.names = names


class HeartbeatReceived(Message):
    """One batch of heartbeats: the sites heard from (the latest beat of each was applied)."""

    def __init__(self, sites: frozenset[str]) -> None:
        super().__init__()
        self.sites = sites


class GpuSample(Message):
    """New utilisation / memory samples for these (site, GPU index) pairs."""

    def __init__(self, gpus: frozenset[tuple[str, int]]) -> None:
        super().__init__()
        self.gpus = gpus


class RoundCompleted(Message):
    """A job finished a round (0-based) on the server."""

    def __init__(self, job_id: str, round: int, record: dict[str, Any]) -> None:
        super().__init__()
        self.job_id = job_id
        self.round = round
        self.record = record


class EventsDropped(Message):
    """Events were lost (the server's `dropped`, or our queue overflowed): state is reloaded."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count


class ActionDone(Message):
    """An action (a console command name, e.g. `abort_job`) succeeded; `detail` says what it did."""

    def __init__(self, command: str, ref: str | None, detail: str) -> None:
        super().__init__()
        self.command = command
        self.ref = ref
        self.detail = detail


class ActionFailed(Message):
    """An action failed; `error` is the server's message, for the user."""

    def __init__(self, command: str, ref: str | None, error: str) -> None:
        super().__init__()
        self.command = command
        self.ref = ref
        self.error = error
