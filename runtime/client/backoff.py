"""Capped exponential backoff with full jitter, for sites reconnecting to a server."""

from __future__ import annotations

import random


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
