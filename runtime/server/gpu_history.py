"""A short history of every site's GPU load, kept on the server from its heartbeat events, so a
console or TUI that attaches now sees the last minutes and not an empty line.

Per (site, GPU index) the last `capacity` samples (server time, utilisation %, memory used), in
compact arrays: 1000 sites with 8 GPUs each hold about 28 MB at the default 120 samples. Sites
are bounded too (the least recently heard of goes first), a site's GPUs at MAX_GPUS, and a site
removed by an operator (or gone from the registry: see `retain`) is forgotten.
"""

from __future__ import annotations

import bisect
import collections
import logging
import math
import threading
from array import array
from typing import Any, Iterable

log = logging.getLogger(__name__)

CAPACITY = 120       # samples per GPU (10 minutes at a 5 s heartbeat)
MAX_SITES = 10_000   # sites with a history; past it the least recently heard of is dropped
MAX_GPUS = 64        # GPUs per site with a history
QUEUE = 50_000       # heartbeats held between two looks (then the oldest are lost)
FOLLOW_EVERY = 0.5   # seconds between the follower's looks at the bus
REPLY_SAMPLES = 250_000  # samples in one answer at most (about 10 MB of JSON)
_NO_MEM = -1         # mem_used unknown (stored as int64)


class GpuRing:
    """One GPU's last `capacity` samples, oldest first: times, utilisation, memory used."""

    __slots__ = ("capacity", "t", "util", "mem")

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.t = array("d")
        self.util = array("d")   # NaN: unknown
        self.mem = array("q")    # _NO_MEM: unknown

    def __len__(self) -> int:
        return len(self.t)

    def add(self, t: float, util: Any, mem_used: Any) -> None:
        u = float(util) if _number(util) else math.nan
        m = int(mem_used) if _number(mem_used) else _NO_MEM
        if not self.t or t >= self.t[-1]:
            self.t.append(t)
            self.util.append(u)
            self.mem.append(m)
        else:  # a beat that overtook an older one on its way here: keep the order by time
            i = bisect.bisect_right(self.t, t)
            self.t.insert(i, t)
            self.util.insert(i, u)
            self.mem.insert(i, m)
        if len(self.t) > self.capacity:
            cut = len(self.t) - self.capacity
            del self.t[:cut], self.util[:cut], self.mem[:cut]

    def export(self, last: int | None = None) -> dict[str, list[Any]]:
        """{"t": [...], "util": [...], "mem_used": [...]}, oldest first; None where unknown."""
        start = 0 if last is None else max(0, len(self.t) - last)
        return {"t": list(self.t[start:]),
                "util": [None if math.isnan(u) else u for u in self.util[start:]],
                "mem_used": [None if m == _NO_MEM else m for m in self.mem[start:]]}


class GpuHistory:
    """Per site, per GPU index, a GpuRing. `record` takes one heartbeat; `follow(bus)` records
    every heartbeat the event bus publishes (and forgets removed sites) on a thread of its own.
    Thread-safe."""

    def __init__(self, capacity: int = CAPACITY, max_sites: int = MAX_SITES,
                 max_gpus: int = MAX_GPUS) -> None:
        self.capacity, self.max_sites, self.max_gpus = capacity, max_sites, max_gpus
        self._lock = threading.Lock()
        self._sites: collections.OrderedDict[str, dict[int, GpuRing]] = collections.OrderedDict()
        self._sub: Any = None
        self._thread: threading.Thread | None = None
        self._taking = threading.Lock()
        self._stop = threading.Event()

    # ---- recording ---------------------------------------------------------------------------

    def record(self, site: str, t: float, gpus: Iterable[dict[str, Any]]) -> None:
        """One heartbeat's GPUs at server time `t`. GPUs it no longer reports are forgotten,
        so a site that reports none (its host has no GPU now) keeps no history."""
        with self._lock:
            rings = self._sites.pop(site, None) or {}
            kept: dict[int, GpuRing] = {}
            for gpu in gpus:
                index = gpu.get("index") if isinstance(gpu, dict) else None
                if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                    continue
                if index not in kept and len(kept) >= self.max_gpus:
                    continue
                ring = kept.get(index) or rings.get(index) or GpuRing(self.capacity)
                ring.add(t, gpu.get("util_percent"), gpu.get("mem_used"))
                kept[index] = ring
            if not kept:
                return
            self._sites[site] = kept  # most recently heard of last
            while len(self._sites) > self.max_sites:
                dropped, _ = self._sites.popitem(last=False)
                log.warning("gpu history: over %d sites, forgot %s (heard of least recently)",
                            self.max_sites, dropped)

    def forget(self, site: str) -> None:
        with self._lock:
            self._sites.pop(site, None)

    def retain(self, sites: Iterable[str]) -> None:
        """Forget every site not in `sites` (the registry's names): a removal the follower
        missed (it fell behind) still takes the site's history away."""
        keep = set(sites)
        with self._lock:
            for name in [n for n in self._sites if n not in keep]:
                del self._sites[name]

    def apply(self, event: dict[str, Any]) -> None:
        """One event of the server's bus: a heartbeat with `gpus` is recorded; a site removed
        by an operator is forgotten. Other events are ignored."""
        kind, site = event.get("type"), event.get("site")
        if not isinstance(site, str):
            return
        if kind == "heartbeat":
            gpus = (event.get("info") or {}).get("gpus")
            if isinstance(gpus, list):
                self.record(site, float(event.get("ts") or 0.0), gpus)
        elif kind == "site_status" and event.get("status") == "REMOVED":
            self.forget(site)

    # ---- following the event bus -------------------------------------------------------------

    def follow(self, bus: Any, queue: int = QUEUE, every: float = FOLLOW_EVERY) -> "GpuHistory":
        """Record the heartbeats `bus` (runtime.server.events.EventBus) publishes from now on:
        a daemon thread takes them every `every` seconds, and every answer takes the rest first
        (so it includes each heartbeat published before it was asked), until close()."""
        self._sub = bus.subscribe(maxsize=queue, types={"heartbeat", "site_status"})
        self._stop.clear()
        self._thread = threading.Thread(target=self._follow, args=(every,), name="gpu-history",
                                        daemon=True)
        self._thread.start()
        return self

    def _follow(self, every: float) -> None:
        while not self._stop.wait(every):
            self.catch_up()

    def catch_up(self) -> None:
        """Record what the bus published since the last look. One taker at a time, so the
        samples of a GPU arrive in the order they were published."""
        if self._sub is None:
            return
        with self._taking:
            for event in self._sub.drain():
                if event.get("type") == "dropped":
                    log.warning("gpu history fell behind: %s heartbeats lost", event.get("count"))
                    continue
                try:
                    self.apply(event)
                except Exception:  # noqa: BLE001 - one odd heartbeat must not end the history
                    log.exception("gpu history: could not record %s from %s", event.get("type"),
                                  event.get("site"))

    def close(self) -> None:
        self._stop.set()
        if self._sub is not None:
            self._sub.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    # ---- reading -----------------------------------------------------------------------------

    def snapshot(self, site: str | None = None, last: int | None = None,
                 max_samples: int = REPLY_SAMPLES) -> tuple[dict[str, dict[str, dict[str, list]]], int]:
        """({site: {"<index>": {"t", "util", "mem_used"}}}, n): sites by name, GPUs by index
        (JSON-ready: the index is a string), only `site` when given, the last n samples of
        each GPU: `last` (default all) or fewer, so that all together stay within `max_samples`
        (a reply must fit in one gRPC message, also for 1000 sites with 8 GPUs each)."""
        self.catch_up()
        with self._lock:
            names = sorted(self._sites) if site is None else [site] if site in self._sites else []
            gpus = sum(len(self._sites[n]) for n in names)
            n = min(self.capacity if last is None else last, max(1, max_samples // max(1, gpus)))
            return {name: {str(i): self._sites[name][i].export(n) for i in sorted(self._sites[name])}
                    for name in names}, n

    def __len__(self) -> int:
        with self._lock:
            return len(self._sites)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
