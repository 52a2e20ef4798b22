"""The server's event bus: every state change, numbered, fanned out to bounded watcher queues."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

Event = dict[str, Any]


class Subscription:
    """One watcher's bounded queue. A watcher that falls behind loses the oldest events and is
    told so by a `dropped` event; it never slows the publisher."""

    def __init__(self, bus: "EventBus", maxsize: int, types: set[str] | None) -> None:
        self._bus = bus
        self._maxsize = maxsize
        self._types = types
        self._queue: collections.deque[Event] = collections.deque()
        self._dropped = 0
        self._cond = threading.Condition()
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self._types is not None and event["type"] not in self._types:
            return
        with self._cond:
            if len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(event)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, a `dropped` notice first if events were lost; None on timeout/close."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            if self._dropped:
                n, self._dropped = self._dropped, 0
                return {"seq": None, "ts": time.time(), "type": "dropped", "count": n}
            if self._queue:
                return self._queue.popleft()
            return None

    def drain(self) -> list[Event]:
        """Every queued event, at once (a `dropped` notice first if events were lost)."""
        with self._cond:
            out = list(self._queue)
            self._queue.clear()
            if self._dropped:
                out.insert(0, {"seq": None, "ts": time.time(), "type": "dropped", "count": self._dropped})
                self._dropped = 0
            return out

    def close(self) -> None:
        self._bus._unsubscribe(self)
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class EventBus:
    """Publishes events with a monotonically increasing `seq` and keeps a short history so a
    watcher can resume after a reconnect (`subscribe(since=seq)`)."""

    def __init__(self, history: int = 2000, transient: frozenset[str] = frozenset({"heartbeat"})) -> None:
        """`transient` types go to current watchers but not into the history: 1000 sites
        heartbeating every second would push every job and site change out of it in 2 s."""
        self._transient = transient
        self._lock = threading.Lock()
        self._seq = 0
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._subs: list[Subscription] = []

    def publish(self, type: str, **fields: Any) -> Event:
        # delivered under the lock that numbers it: every watcher sees the seqs in order (an
        # offer only appends to a bounded queue, so a slow watcher still slows no one)
        with self._lock:
            self._seq += 1
            event = {"seq": self._seq, "ts": time.time(), "type": type, **fields}
            if type not in self._transient:
                self._history.append(event)
            for sub in self._subs:
                sub._offer(event)
        return event

    def subscribe(
        self, maxsize: int = 10000, types: set[str] | None = None, since: int | None = None
    ) -> Subscription:
        sub = Subscription(self, maxsize, types)
        with self._lock:
            if since is not None:
                for event in self._history:
                    if event["seq"] > since:
                        sub._offer(event)
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def last_seq(self) -> int:
        return self._seq
