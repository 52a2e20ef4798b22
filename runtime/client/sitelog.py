"""Site log files for many sites in one process: buffered in memory, flushed in batches."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path


_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


class LogSink:
    """Collects text per file and appends it every `interval` seconds and on `flush()`/`close()`.

    One open file per site would exhaust file descriptors with 1000 simulated sites; writing
    line by line would cost a syscall per line. Batches cost neither.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._buffers: dict[Path, list[str]] = {}
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-sink", daemon=True)
        self._thread.start()

    def write(self, path: Path, text: str) -> None:
        with self._lock:
            buf = self._buffers.get(path)
            if buf is None:
                buf = self._buffers[path] = []
            buf.append(text)

    def writer(self, path: Path):
        path = Path(path)
        return lambda text: self.write(path, text)

    def flush(self) -> None:
        with self._lock:
            pending = {p: b for p, b in self._buffers.items() if b}
            self._buffers = {p: [] for p in self._buffers}
        for path, chunks in pending.items():
            data = "".join(chunks).encode("utf-8", errors="replace")
            try:
                fd = os.open(path, _FLAGS, 0o644)
            except FileNotFoundError:  # folders are made here, off the sites' critical path
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, _FLAGS, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()


class SinkHandler(logging.Handler):
    """A logging handler that writes formatted records to a LogSink writer."""

    def __init__(self, write) -> None:
        super().__init__()
        self._write = write
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)


def site_logger(name: str, write) -> logging.Logger:
    """A logger for one site (or site+job) that writes through a sink and nowhere else."""
    logger = logging.Logger(name, logging.INFO)  # not registered globally: no leak per job
    logger.addHandler(SinkHandler(write))
    return logger


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
