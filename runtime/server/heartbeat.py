"""Site liveness: CONNECTED -> STALE -> LOST when a site goes silent.

Every call a site makes (register, heartbeat, poll, poll_many, submit_result, report_job,
log_metrics) marks it seen, and a site blocked in a long poll counts as seen for as long as the
poll lasts. The monitor looks every `check_interval` seconds: a site not seen for `stale_after`
seconds becomes STALE (still counted), one not seen for `lost_after` seconds becomes LOST and its
pending tasks are failed, so whoever waits on them proceeds or fails instead of hanging. A call
from a STALE or LOST site brings it back to CONNECTED at once (the engine does that, not the
monitor). DISCONNECTED sites (they said goodbye) are not monitored.

The monitor keeps its own clock: it notes, per site, when (on its clock) it last saw the site's
`seen_seq` change, so the engine's timestamps and the monitor's clock never need to agree and
tests can drive `check(now)` with a fake clock.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from runtime.server.sites import SiteStatus

if TYPE_CHECKING:
    from runtime.server.engine import ServerEngine

log = logging.getLogger(__name__)


class HeartbeatMonitor:
    """Marks silent sites STALE, then LOST, on a daemon thread (`start()` / `stop()`)."""

    def __init__(
        self,
        engine: "ServerEngine",
        interval: float | None = None,
        stale_after: float | None = None,
        lost_after: float | None = None,
        check_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        interval = engine.heartbeat_interval if interval is None else interval
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be > 0, got {interval}")
        self.engine = engine
        self.interval = interval
        self.stale_after = 3 * interval if stale_after is None else stale_after
        self.lost_after = 10 * interval if lost_after is None else lost_after
        if not 0 < self.stale_after <= self.lost_after:
            raise ValueError(
                f"need 0 < stale_after <= lost_after, got stale_after={self.stale_after}, "
                f"lost_after={self.lost_after}"
            )
        self.check_interval = (
            min(1.0, self.stale_after / 3) if check_interval is None else check_interval
        )
        if self.check_interval <= 0:
            raise ValueError(f"check_interval must be > 0, got {self.check_interval}")
        self.clock = clock
        self._seen: dict[str, tuple[int, float]] = {}  # site -> (seen_seq, when, on our clock)
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the thread --------------------------------------------------------------------------

    def start(self) -> "HeartbeatMonitor":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="flshell-heartbeat-monitor", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread and wait for it. Idempotent."""
        self._stop.set()
        th, self._thread = self._thread, None
        if th is not None and th is not threading.current_thread():
            th.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.check_interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - one bad check must not end liveness tracking
                log.exception("heartbeat check failed")

    # ---- one look at every site --------------------------------------------------------------

    def check(self, now: float | None = None) -> list[tuple[str, str]]:
        """Look at every site once; returns the (site, new status) changes this check made."""
        with self._check_lock:
            now = self.clock() if now is None else now
            changes: list[tuple[str, str]] = []
            present = set()
            for rec in self.engine.sites.all():
                present.add(rec.name)
                if rec.status == SiteStatus.DISCONNECTED:
                    self._seen.pop(rec.name, None)
                    continue
                seq = rec.seen_seq
                last = self._seen.get(rec.name)
                if last is None or last[0] != seq or rec.polls_in_flight > 0:
                    self._seen[rec.name] = (seq, now)  # heard from since the last look
                    continue
                silent = now - last[1]
                if silent >= self.lost_after and rec.status in SiteStatus.LIVE:
                    target = SiteStatus.LOST
                elif silent >= self.stale_after and rec.status == SiteStatus.CONNECTED:
                    target = SiteStatus.STALE
                else:
                    continue
                if self.engine.mark_site_silent(rec.name, target, silent, seq):
                    changes.append((rec.name, target))
            for name in set(self._seen) - present:
                del self._seen[name]
            return changes
