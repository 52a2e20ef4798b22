"""The site registry: who is connected, their last heartbeat and what they reported."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any


class SiteStatus:
    CONNECTED = "CONNECTED"
    STALE = "STALE"
    LOST = "LOST"
    DISCONNECTED = "DISCONNECTED"


@dataclass
class SiteRecord:
    """One site as the server sees it, with its inbox of messages waiting to be polled."""

    name: str
    status: str = SiteStatus.CONNECTED
    registered_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    info: dict[str, Any] = field(default_factory=dict)
    inbox: collections.deque = field(default_factory=collections.deque)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "registered_at": self.registered_at,
            "heartbeat_age": round(time.time() - self.last_seen, 3),
            "info": dict(self.info),
        }


class SiteRegistry:
    """Thread-safe name -> SiteRecord map."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sites: dict[str, SiteRecord] = {}

    def upsert(self, name: str, info: dict[str, Any]) -> tuple[SiteRecord, bool]:
        """Register or re-register; returns the record and whether it is new."""
        with self._lock:
            rec = self._sites.get(name)
            new = rec is None
            if rec is None:
                rec = self._sites[name] = SiteRecord(name=name)
            rec.info.update(info)
            rec.status = SiteStatus.CONNECTED
            rec.last_seen = time.time()
            return rec, new

    def get(self, name: str) -> SiteRecord | None:
        with self._lock:
            return self._sites.get(name)

    def names(self, status: str | None = SiteStatus.CONNECTED) -> list[str]:
        with self._lock:
            return [n for n, r in self._sites.items() if status is None or r.status == status]

    def all(self) -> list[SiteRecord]:
        with self._lock:
            return list(self._sites.values())
