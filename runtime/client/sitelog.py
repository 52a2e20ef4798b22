"""Site log files for many sites in one process: buffered in memory, flushed in batches."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable


_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


MAX_UNSHIPPED = 1 << 20  # characters of a file's text kept for a retry while the server is away


class LogSink:
    """Collects text per file and appends it every `interval` seconds and on `flush()`/`close()`.

    One open file per site would exhaust file descriptors with 1000 simulated sites; writing
    line by line would cost a syscall per line. Batches cost neither.

    A file can also be shipped (`ship(path, send)`): each flush then passes what was written to
    it since the last one to `send` (a site sends its job's log to the server), in order; text a
    `send` could not deliver (TransportError) is kept, within a bound, for the next flush.
    """

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buffers: dict[Path, list[str]] = {}
        self._shipped: dict[Path, tuple[Callable[[str], None], list[str]]] = {}
        self._expiry: dict[Path, float] = {}  # shipped paths to let go of, and when
        self._flush_lock = threading.Lock()  # one flush at a time: shipped batches stay in order
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
            shipped = self._shipped.get(path)
            if shipped is not None:
                shipped[1].append(text)

    def writer(self, path: Path):
        path = Path(path)
        return lambda text: self.write(path, text)

    def ship(self, path: Path, send: Callable[[str], None]) -> None:
        """From now on, also `send` what is written to `path` (batched, in order)."""
        path = Path(path)
        with self._lock:
            pending = self._shipped[path][1] if path in self._shipped else []
            self._shipped[path] = (send, pending)
            self._expiry.pop(path, None)

    def unship(self, path: Path, after: float = 0.0) -> None:
        """Stop shipping `path` once what it has pending is sent: at once, or with `after`, at
        the first flush `after` seconds from now (what is written meanwhile still goes)."""
        path = Path(path)
        if after > 0:
            with self._lock:
                if path in self._shipped:
                    self._expiry[path] = self._clock() + after
            return
        self.flush_one(path)
        with self._lock:
            self._shipped.pop(path, None)
            self._expiry.pop(path, None)

    def flush(self, ship: bool = True) -> None:
        """Append what is buffered to the files; then, unless not `ship`, send the shipped files'
        new text."""
        with self._flush_lock:
            self._write_files()
            if ship:
                self._send()

    def flush_one(self, path: Path) -> None:
        """Write and ship what is buffered for `path` alone now (a site about to report a
        result: the server has its log up to there), leaving the other files to the timer."""
        path = Path(path)
        with self._flush_lock:
            with self._lock:
                chunks = self._buffers.get(path)
                if chunks:
                    self._buffers[path] = []
            if chunks:
                self._append(path, "".join(chunks))
            self._send(only=path)

    def flush_file_only(self, wait: float) -> None:
        """Write what is buffered to the files, unless a flush (maybe stuck shipping) holds on
        longer than `wait` seconds: for a process about to die, which must not hang here."""
        if self._flush_lock.acquire(timeout=wait):
            try:
                self._write_files()
            finally:
                self._flush_lock.release()

    def _write_files(self) -> None:
        with self._lock:
            pending = {p: b for p, b in self._buffers.items() if b}
            self._buffers = {p: [] for p in self._buffers}
        for path, chunks in pending.items():
            self._append(path, "".join(chunks))

    @staticmethod
    def _append(path: Path, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        try:
            fd = os.open(path, _FLAGS, 0o644)
        except FileNotFoundError:  # folders are made here, off the sites' critical path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, _FLAGS, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _send(self, only: Path | None = None) -> None:
        from runtime.transport.base import TransportError

        with self._lock:
            batches = []
            items = self._shipped.items() if only is None else \
                [(only, self._shipped[only])] if only in self._shipped else []
            for path, (send, pending) in items:
                if pending:
                    batches.append((path, send, "".join(pending)))
                    pending.clear()
        for path, send, text in batches:
            try:
                send(text)
            except TransportError:
                with self._lock:  # kept for the next batch, within a bound
                    shipped = self._shipped.get(path)
                    if shipped is not None:
                        shipped[1].insert(0, text[-MAX_UNSHIPPED:])

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.tick()

    def tick(self) -> None:
        """What the sink's timer does: flush, then let go of shipped files whose time is up."""
        self.flush()
        now = self._clock()
        with self._lock:
            for path in [p for p, at in self._expiry.items() if at <= now]:
                if not self._shipped.get(path, (None, []))[1]:  # sent: nothing pending
                    self._shipped.pop(path, None)
                    del self._expiry[path]

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
