"""Capped exponential backoff with full jitter, for sites reconnecting to a server."""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


class Backoff:
    """delay() -> 0..min(cap, base * 2**attempt), randomised so many sites do not retry in step
    (a server coming back is not hit by every site in the same instant); reset() on success."""

    def __init__(self, base: float = 0.05, cap: float = 10.0, rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base}, cap={cap}")
        self.base, self.cap = base, cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return self._rng.uniform(self.base / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def retrying(call: Callable[[], T], *, within: float, stop: threading.Event | None = None,
             backoff: Backoff | None = None, on_retry: Callable[[Exception, float], None] | None = None,
             clock: Callable[[], float] = time.monotonic) -> T:
    """`call()`, again after a backoff delay while it raises a retryable TransportError (the
    call did not reach a server that could answer), for up to `within` seconds or until `stop`
    is set; then the last error is raised. A refusal is raised at once. For calls the server
    may take twice without harm (reports, results: a second copy is refused, not counted)."""
    from runtime.transport.base import TransportError

    backoff = backoff or Backoff(base=0.1, cap=2.0)
    deadline = clock() + within
    while True:
        try:
            return call()
        except TransportError as e:
            delay = backoff.delay()
            if not e.retryable or clock() + delay > deadline or (stop is not None and stop.is_set()):
                raise
            if on_retry is not None:
                on_retry(e, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise
            else:
                time.sleep(delay)
