"""Sums that do not depend on the order their terms arrive in: the same model bit for bit
whichever site answers first.

Floating-point addition is not associative, so a running sum in arrival order changes in its
last bits from run to run. `OrderFreeSum` keeps each element as an unevaluated pair `hi + lo`
of float64 (a double-double, grown with Knuth's error-free TwoSum): every addition's rounding
error is kept in `lo`, so the pair holds the exact sum of the terms as long as an element's
terms span at most ~100 bits (float32 values within a factor of about 2^50 of each other,
float64 within 2^45). The result is computed from the canonical pair (hi = the exact sum
rounded, lo = the rest), which depends on the terms only, never on their order. Each term
`w * x` is rounded the same way whenever it comes, so only the sum needed this care.

Scalars (weights, metrics) use `math.fsum`, exactly rounded and order-free as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BLOCK = 65536  # elements per step: the temporaries stay in cache


class OrderFreeSum:
    """Σ w_i * x_i over numpy arrays of one shape, order-independent (see the module doc)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self.hi = np.zeros(self.shape, dtype=np.float64)
        self.lo = np.zeros(self.shape, dtype=np.float64)
        n = min(BLOCK, max(self.hi.size, 1))
        self._x, self._t, self._b = (np.empty(n, dtype=np.float64) for _ in range(3))

    def add(self, x: np.ndarray, w: float = 1.0) -> None:
        xv = np.asarray(x).reshape(-1)
        hi, lo = self.hi.reshape(-1), self.lo.reshape(-1)
        for i in range(0, hi.size, BLOCK):
            j = min(i + BLOCK, hi.size)
            n = j - i
            xs, t, b = self._x[:n], self._t[:n], self._b[:n]
            np.copyto(xs, xv[i:j], casting="unsafe")  # to float64: exact for every narrower float
            if w != 1.0:
                np.multiply(xs, w, out=xs)
            h = hi[i:j]
            np.add(h, xs, out=t)          # t = fl(h + x)
            np.subtract(t, h, out=b)      # b = t - h
            np.subtract(xs, b, out=xs)    # x - b
            np.subtract(t, b, out=b)      # t - b
            np.subtract(h, b, out=b)      # h - (t - b)
            np.add(b, xs, out=b)          # the rounding error of t: exactly h + x - t
            np.add(lo[i:j], b, out=lo[i:j])
            h[...] = t

    def _each_block(self, out: np.ndarray, finish) -> np.ndarray:
        """`out` filled block by block with finish(hi, lo, t, b), from the canonical pair: hi =
        the exact sum rounded to float64, lo = the remainder (a function of the terms only)."""
        hi, lo, o = self.hi.reshape(-1), self.lo.reshape(-1), out.reshape(-1)
        for i in range(0, hi.size, BLOCK):
            j = min(i + BLOCK, hi.size)
            n = j - i
            t, b = self._t[:n], self._b[:n]
            np.add(hi[i:j], lo[i:j], out=t)    # t = fl(hi + lo)
            np.subtract(t, hi[i:j], out=b)
            np.subtract(lo[i:j], b, out=b)     # b = lo - (t - hi): exact (|hi| >= |lo|)
            o[i:j] = finish(t, b)
        return out

    def total(self) -> np.ndarray:
        """The sum, rounded once to float64."""
        return self._each_block(np.empty(self.shape, dtype=np.float64), lambda t, b: t)

    def mean(self, weight: float, dtype: np.dtype | type = np.float64) -> np.ndarray:
        """The sum divided by `weight`, as `dtype` (a float dtype)."""
        def finish(t: np.ndarray, b: np.ndarray) -> np.ndarray:
            np.divide(t, weight, out=t)
            np.divide(b, weight, out=b)
            return np.add(t, b, out=t)

        return self._each_block(np.empty(self.shape, dtype=dtype), finish)


class TorchOrderFreeSum:
    """OrderFreeSum for torch tensors (on their device), accumulated in float64."""

    def __init__(self, like: Any) -> None:
        import torch

        self.hi = torch.zeros(like.shape, dtype=torch.float64, device=like.device)
        self.lo = torch.zeros_like(self.hi)

    def add(self, x: Any, w: float = 1.0) -> None:
        xs = x.to(self.hi.dtype)
        if w != 1.0:
            xs = xs * w
        t = self.hi + xs
        b = t - self.hi
        self.lo += (self.hi - (t - b)) + (xs - b)
        self.hi = t

    def _canonical(self) -> tuple[Any, Any]:
        hi = self.hi + self.lo
        return hi, self.lo - (hi - self.hi)

    def total(self) -> Any:
        return self._canonical()[0]

    def mean(self, weight: float) -> Any:
        hi, lo = self._canonical()
        return hi / weight + lo / weight


def order_free_sum(like: Any) -> OrderFreeSum | TorchOrderFreeSum:
    """The accumulator for values shaped like `like` (a numpy array or a torch tensor)."""
    if type(like).__module__.startswith("torch"):
        return TorchOrderFreeSum(like)
    return OrderFreeSum(np.shape(like))
