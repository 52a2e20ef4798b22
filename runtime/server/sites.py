"""The site registry: who is connected, their last heartbeat and what they reported.

Liveness (CONNECTED -> STALE -> LOST) is decided by `runtime.server.heartbeat.HeartbeatMonitor`
from what the engine records here: every call from a site marks it seen (`SiteRecord.mark_seen`,
a fresh `seen_seq`), and a site blocked in a long poll counts as seen (`polls_in_flight`).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

_SEEN_SEQ = itertools.count(1)  # next() is atomic: every mark_seen gets a distinct number


def next_seen_seq() -> int:
    """A fresh seen_seq (the records marked seen by one call may share it)."""
    return next(_SEEN_SEQ)


class SiteStatus:
    CONNECTED = "CONNECTED"  # heartbeat fresh
    STALE = "STALE"  # missed beats, still counted
    LOST = "LOST"  # past the timeout; its tasks are given up
    DISCONNECTED = "DISCONNECTED"  # said goodbye

    ALL = (CONNECTED, STALE, LOST, DISCONNECTED)
    LIVE = (CONNECTED, STALE)  # counted as present (a STALE site may still answer)


@dataclass
class SiteRecord:
    """One site as the server sees it, with its inbox of messages waiting to be polled."""

    name: str
    status: str = SiteStatus.CONNECTED
    registered_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)  # wall clock, for display
    info: dict[str, Any] = field(default_factory=dict)
    inbox: collections.deque = field(default_factory=collections.deque)
    job_inboxes: dict[str, collections.deque] = field(default_factory=dict)  # per job process
    cond: threading.Condition = field(default_factory=threading.Condition)
    seen_seq: int = field(default_factory=lambda: next(_SEEN_SEQ))  # changes on every call
    polls_in_flight: int = 0  # polls (poll / poll_many) blocked on the server right now

    def mark_seen(self) -> None:
        """The site just called the server."""
        self.last_seen = time.time()
        self.seen_seq = next(_SEEN_SEQ)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "registered_at": self.registered_at,
            "last_seen": self.last_seen,
            "heartbeat_age": round(max(0.0, time.time() - self.last_seen), 3),
            "polling": self.polls_in_flight > 0,
            "queued": len(self.inbox) + sum(len(b) for b in self.job_inboxes.values()),
            "info": dict(self.info),
        }


class SiteRegistry:
    """Thread-safe name -> SiteRecord map."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sites: dict[str, SiteRecord] = {}
        # Held while a site's status changes *and* its event is published, so watchers see
        # status changes in the order they happened (the engine and the heartbeat monitor).
        self.status_lock = threading.RLock()

    def upsert(self, name: str, info: dict[str, Any]) -> tuple[SiteRecord, bool]:
        """Register or re-register; returns the record and whether it is new.

        A site that registers again (after a restart, or back from LOST) keeps its one entry."""
        with self._lock:
            rec = self._sites.get(name)
            new = rec is None
            if rec is None:
                rec = self._sites[name] = SiteRecord(name=name)
            if not new:
                rec.registered_at = time.time()  # when it last registered
            rec.info = dict(info)  # what the site says now (heartbeats add load to it)
            rec.status = SiteStatus.CONNECTED
            rec.mark_seen()
            return rec, new

    def remove(self, name: str) -> SiteRecord | None:
        with self._lock:
            return self._sites.pop(name, None)

    def get(self, name: str) -> SiteRecord | None:
        with self._lock:
            return self._sites.get(name)

    def get_many(self, names: Iterable[str]) -> list[SiteRecord]:
        """The records of those of `names` that are registered."""
        with self._lock:
            return [r for r in map(self._sites.get, names) if r is not None]

    def names(self, status: str | Iterable[str] | None = SiteStatus.CONNECTED) -> list[str]:
        """Names of the sites in `status` (one status, several, or None for all)."""
        wanted = {status} if isinstance(status, str) else None if status is None else set(status)
        with self._lock:
            return [n for n, r in self._sites.items() if wanted is None or r.status in wanted]

    def all(self) -> list[SiteRecord]:
        with self._lock:
            return list(self._sites.values())

    def status_counts(self) -> dict[str, int]:
        """How many sites are in each status; every status is present, zero or not."""
        counts = dict.fromkeys(SiteStatus.ALL, 0)
        for rec in self.all():
            counts[rec.status] = counts.get(rec.status, 0) + 1
        return counts

    def snapshot(self) -> list[dict[str, Any]]:
        """Every site as plain JSON-compatible data, by name (what the admin service lists)."""
        return [rec.snapshot() for rec in sorted(self.all(), key=lambda r: r.name)]
