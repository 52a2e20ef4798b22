"""SummaryWriter for a site's training script: scalars go to the server's TensorBoard files."""

from __future__ import annotations

import math
import numbers
import operator
import threading
import time
from types import TracebackType
from typing import Any, Mapping

__all__ = ["SummaryWriter"]


def _as_float(tag: str, value: Any) -> float:
    """A Python, numpy or one-element torch number as float; bools and the rest: TypeError."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (int, float)):
        try:
            value = item()  # numpy scalars / 0-d arrays, torch tensors -> Python scalar
        except (ValueError, RuntimeError, TypeError):
            raise TypeError(
                f"metric {tag!r}: value must be a single number, got {type(value).__name__}"
                f" with shape {tuple(getattr(value, 'shape', ()))}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"metric {tag!r}: value must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"metric {tag!r}: value {value!r} is too large for a float") from None


def _as_step(tag: str, step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError(f"metric {tag!r}: global_step must be an int, got bool")
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(
            f"metric {tag!r}: global_step must be an int, got {type(step).__name__}"
        ) from None
    if step < 0:
        raise ValueError(f"metric {tag!r}: global_step must be >= 0, got {step}")
    return step


class SummaryWriter:
    """Sends scalars to the server, which writes them to `<result>/tb/<site>/` event files.

    Without `global_step`, a tag's step is one past the last step logged for that tag (0 first).
    """

    def __init__(self, log_dir: str | None = None, comment: str = "", **kwargs: Any) -> None:
        # log_dir, comment and other torch/NVFlare arguments are accepted and ignored:
        # where the files go is decided by the server.
        self._next_step: dict[str, int] = {}
        self._lock = threading.Lock()

    def add_scalar(
        self,
        tag: str,
        scalar: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        **kwargs: Any,
    ) -> None:
        """Record one scalar under `tag`."""
        self._send([self._record(tag, scalar, global_step, walltime)])

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Any],
        global_step: int | None = None,
        walltime: float | None = None,
        **kwargs: Any,
    ) -> None:
        """Record scalars under "<main_tag>/<key>"; all are checked before any is sent."""
        _check_tag(main_tag)
        if not isinstance(tag_scalar_dict, Mapping):
            raise TypeError(
                f"metric {main_tag!r}: tag_scalar_dict must be a mapping,"
                f" got {type(tag_scalar_dict).__name__}"
            )
        for key in tag_scalar_dict:
            _check_tag(key, f"metric {main_tag!r}: key")
        walltime = time.time() if walltime is None else walltime
        items = [(f"{main_tag}/{key}", value) for key, value in tag_scalar_dict.items()]
        checked = [(tag, _as_float(tag, value)) for tag, value in items]
        self._send([self._record(tag, value, global_step, walltime) for tag, value in checked])

    def flush(self) -> None:
        """Ask the Client API to ship buffered metrics to the server now."""
        from runtime.client import api

        api._flush_metrics()

    def close(self) -> None:
        """Same as flush(); the writer stays usable."""
        self.flush()

    def _record(
        self, tag: str, value: Any, global_step: int | None, walltime: float | None
    ) -> dict[str, Any]:
        _check_tag(tag)
        value = _as_float(tag, value)
        wall_time = time.time() if walltime is None else float(walltime)
        if not math.isfinite(wall_time):
            raise ValueError(f"metric {tag!r}: walltime must be finite, got {walltime!r}")
        with self._lock:
            if global_step is None:
                step = self._next_step.get(tag, 0)
            else:
                step = _as_step(tag, global_step)
            self._next_step[tag] = step + 1
        return {"tag": tag, "value": value, "step": step, "wall_time": wall_time}

    @staticmethod
    def _send(records: list[dict[str, Any]]) -> None:
        from runtime.client import api

        for record in records:
            api._record_metric(record)

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_tag(tag: Any, what: str = "metric tag") -> None:
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"{what} must be a non-empty string, got {tag!r}")
