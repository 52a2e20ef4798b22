"""Metrics tracking: TensorBoard event files, one folder per source ("site-1", "server")."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from runtime.tracking.tfevents import EventFileWriter, check_scalar

__all__ = ["EventFileWriter", "MetricsWriter", "check_source"]

_SEPARATORS = ("/", "\\", "\0")


def check_source(source: str) -> str:
    """Return `source` if it is a safe folder name, else raise ValueError."""
    if (
        not isinstance(source, str)
        or not source
        or source in (".", "..")
        or any(sep in source for sep in _SEPARATORS)
    ):
        raise ValueError(
            f"metrics source must be a plain name like 'site-1' or 'server', got {source!r}"
        )
    return source


class MetricsWriter:
    """Writes metric records to `root/<source>/events.out.tfevents.*`, one event file per source."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._writers: dict[str, EventFileWriter] = {}
        self._lock = threading.Lock()
        self._closed = False

    def write(self, source: str, records: list[dict[str, Any]]) -> None:
        """Append `records` ({"tag", "value", "step", optional "wall_time"}) to `source`'s file.

        Every record is checked first, so a bad one raises ValueError and nothing is written.
        """
        check_source(source)
        checked = [self._check_record(source, i, record) for i, record in enumerate(records)]
        with self._lock:
            if self._closed:
                raise ValueError(f"metrics writer for {self.root} is closed")
            if not checked:
                return
            writer = self._writers.get(source)
            if writer is None:
                writer = self._writers[source] = EventFileWriter(self.root / source)
            for tag, value, step, wall_time in checked:
                writer.add_scalar(tag, value, step, wall_time)

    def flush(self) -> None:
        """Write every source's buffered records to disk."""
        with self._lock:
            for writer in self._writers.values():
                writer.flush()

    def close(self) -> None:
        """Flush and close every event file; later calls do nothing."""
        with self._lock:
            self._closed = True
            writers, self._writers = self._writers, {}
            for writer in writers.values():
                writer.close()

    @staticmethod
    def _check_record(
        source: str, index: int, record: Any
    ) -> tuple[str, float, int, float | None]:
        where = f"metric record {index} from {source!r}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a dict, got {type(record).__name__}")
        missing = [key for key in ("tag", "value", "step") if key not in record]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        wall_time = record.get("wall_time")
        if wall_time is not None and (
            isinstance(wall_time, bool) or not isinstance(wall_time, (int, float))
        ):
            raise ValueError(f"{where}: wall_time must be a number, got {wall_time!r}")
        try:
            value, step = check_scalar(record["tag"], record["value"], record["step"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        return record["tag"], value, step, wall_time

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
