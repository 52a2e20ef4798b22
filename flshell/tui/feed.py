"""The live feed: one worker thread keeps a watch open on the DataSource (reconnecting with
backoff) and fills a bounded, coalescing EventQueue that the UI drains a few times a second."""

from __future__ import annotations

import collections
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.admin.errors import AdminError
from runtime.admin.session import Event

from flshell.tui.data import WATCH_TYPES, DataSource
from flshell.tui.messages import Connected, ConnectionLost

MAX_QUEUED = 2000   # events other than heartbeats held between two drains; older ones are dropped
MAX_BEATS = 20000   # sites whose latest heartbeat is held between two drains
MAX_TRAIL = 120     # GPU / host samples kept per site from heartbeats that a newer one replaced


def host_sample(event: Event) -> tuple[float, float | None, float | None] | None:
    """(the heartbeat's server time, CPU %, memory %) of the host a heartbeat reports, or None."""
    host = (event.data.get("info") or {}).get("host") or {}
    cpu = host.get("cpu_percent")
    used, total = host.get("mem_used"), host.get("mem_total")
    mem = host.get("memory_percent")
    if mem is None and isinstance(used, (int, float)) and isinstance(total, (int, float)) and total:
        mem = 100.0 * used / total
    cpu = float(cpu) if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) else None
    mem = float(mem) if isinstance(mem, (int, float)) and not isinstance(mem, bool) else None
    return None if cpu is None and mem is None else (event.ts, cpu, mem)


def gpu_samples(event: Event) -> tuple[tuple[int, float, float], ...]:
    """(GPU index, utilisation %, the heartbeat's server time) of each GPU a heartbeat reports."""
    gpus = (event.data.get("info") or {}).get("gpus") or ()
    return tuple((int(g.get("index", 0)), float(g["util_percent"]), event.ts) for g in gpus
                 if isinstance(g.get("util_percent"), (int, float)))


@dataclass
class Batch:
    """What one drain took from the queue: events in order, the latest heartbeat of each site,
    and how many events were lost to overflow (then the UI reloads the snapshot)."""

    events: list[Event] = field(default_factory=list)
    heartbeats: dict[str, Event] = field(default_factory=dict)
    lost: int = 0
    # GPU utilisation of the heartbeats a newer one replaced: site -> [((index, util, ts), ...), ...]
    trails: dict[str, list[tuple[tuple[int, float, float], ...]]] = field(default_factory=dict)
    # host load of the heartbeats a newer one replaced: site -> [(ts, cpu %, mem %), ...]
    host_trails: dict[str, list[tuple[float, float | None, float | None]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.events or self.heartbeats or self.lost)


class EventQueue:
    """Bounded between the feed thread (put) and the UI (drain). Heartbeats coalesce: only the
    latest per site is kept, so 1000 sites beating every second hold at most 1000 entries
    however slow the UI is (the GPU utilisation and host load of the replaced ones are kept
    aside, at most MAX_TRAIL samples a site, for the sparklines); other events are kept in order up to
    `max_events`."""

    def __init__(self, max_events: int = MAX_QUEUED, max_sites: int = MAX_BEATS) -> None:
        self.max_events, self.max_sites = max_events, max_sites
        self._lock = threading.Lock()
        self._events: collections.deque[Event] = collections.deque()
        self._beats: dict[str, Event] = {}
        self._trails: dict[str, collections.deque] = {}
        self._host_trails: dict[str, collections.deque] = {}
        self._lost = 0
        self.received = 0     # events put, ever
        self.coalesced = 0    # heartbeats replaced by a newer one of the same site before a drain
        self.high_water = 0   # the most entries held at once

    def __len__(self) -> int:
        with self._lock:
            return len(self._events) + len(self._beats)

    def put(self, event: Event) -> None:
        with self._lock:
            self.received += 1
            if event.type == "heartbeat":
                site = str(event.data.get("site"))
                old = self._beats.get(site)
                if old is not None:
                    self.coalesced += 1
                    if samples := gpu_samples(old):
                        self._trails.setdefault(site, collections.deque(maxlen=MAX_TRAIL)).append(samples)
                    if host := host_sample(old):
                        self._host_trails.setdefault(site, collections.deque(maxlen=MAX_TRAIL)).append(host)
                elif len(self._beats) >= self.max_sites:
                    self._lost += 1
                    return
                self._beats[site] = event
            else:
                if len(self._events) >= self.max_events:
                    self._events.popleft()
                    self._lost += 1
                self._events.append(event)
            self.high_water = max(self.high_water, len(self._events) + len(self._beats))

    def drain(self) -> Batch:
        with self._lock:
            batch = Batch(list(self._events), self._beats, self._lost,
                          {site: list(trail) for site, trail in self._trails.items()},
                          {site: list(trail) for site, trail in self._host_trails.items()})
            self._events.clear()
            self._beats, self._trails, self._host_trails = {}, {}, {}
            self._lost = 0
            return batch


class LiveFeed:
    """Connect (watch first, then load, so nothing is missed between them), post `Connected`
    with the snapshot, then queue every event; when the watch fails or ends, post
    `ConnectionLost` and retry with capped exponential backoff, resuming after the last seq.

    With `handshake`, the feed waits for the UI to set the Connected message's `applied` before
    it queues that watch's events (the server holds them meanwhile): the UI then never applies
    an event before the snapshot it follows, however its drain timer and its messages interleave."""

    def __init__(self, source: DataSource, queue: EventQueue, post: Callable[[Any], Any],
                 base_delay: float = 0.5, max_delay: float = 5.0, rng: random.Random | None = None,
                 handshake: bool = False) -> None:
        self.source, self.queue, self.post = source, queue, post
        self.base_delay, self.max_delay = base_delay, max_delay
        self.handshake = handshake
        self.awaiting_ui = False  # posted Connected, waiting for the UI to apply its snapshot
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None
        self.last_seq: int | None = None

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    def run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                stream = self.source.watch(since=self.last_seq, types=WATCH_TYPES)
            except AdminError as e:
                attempt += 1
                self._lost(str(e), attempt)
                continue
            with self._lock:
                if self._stop.is_set():
                    stream.close()
                    return
                self._stream = stream
            error = "the server ended the event stream"
            try:
                snapshot = self.source.load()
                if stream.seq is not None and self.last_seq is None:
                    self.last_seq = stream.seq
                connected = Connected(snapshot, attempts=attempt)
                self.post(connected)
                attempt = 0
                if self.handshake and not self._await_ui(connected):
                    return
                for event in stream:
                    if event.seq is not None:
                        self.last_seq = event.seq
                    self.queue.put(event)
            except AdminError as e:
                error = str(e)
            finally:
                with self._lock:
                    self._stream = None
                stream.close()
            if self._stop.is_set():
                return
            attempt += 1
            self._lost(error, attempt)

    def _await_ui(self, connected: Connected) -> bool:
        """Wait until the UI applied `connected`'s snapshot; False when stopped meanwhile."""
        self.awaiting_ui = True
        try:
            while not connected.applied.wait(0.1):
                if self._stop.is_set():
                    return False
            return True
        finally:
            self.awaiting_ui = False

    def _lost(self, error: str, attempt: int) -> None:
        delay = self.delay(attempt)
        self.post(ConnectionLost(error, attempt, delay))
        self._stop.wait(delay)

    def stop(self) -> None:
        """End run() soon, from any thread: the open watch is closed."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
