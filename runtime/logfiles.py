"""Log files for many writers in one process (1000 simulated sites, a server's collected site
logs): text buffered in memory per file and appended in batches, optionally shipped on."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def _path(p: Path | str) -> Path:
    return p if isinstance(p, Path) else Path(p)  # (Path(a Path) parses it again: not free)


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
        self._buffers: dict[Path, list[str]] = {}  # only files with text to write: a flush
        self._shipped: dict[Path, tuple[Callable[[str], None], list[str]]] = {}  # costs what it writes
        self._to_send: dict[Path, None] = {}  # shipped files with text to send, in order
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
                self._to_send[path] = None

    def writer(self, path: Path):
        path = _path(path)
        return lambda text: self.write(path, text)

    def ship(self, path: Path, send: Callable[[str], None]) -> None:
        """From now on, also `send` what is written to `path` (batched, in order)."""
        path = _path(path)
        with self._lock:
            pending = self._shipped[path][1] if path in self._shipped else []
            self._shipped[path] = (send, pending)
            if pending:
                self._to_send[path] = None
            self._expiry.pop(path, None)

    def unship(self, path: Path, after: float = 0.0) -> None:
        """Stop shipping `path` once what it has pending is sent: at once, or with `after`, at
        the first flush `after` seconds from now (what is written meanwhile still goes)."""
        path = _path(path)
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
        path = _path(path)
        with self._flush_lock:
            with self._lock:
                chunks = self._buffers.pop(path, None)
            if chunks:
                self._append(path, "".join(chunks))
            self._send(only=path)

    def ship_now(self, path: Path) -> None:
        """Send what `path` has pending now (its file is written with the next batch)."""
        with self._flush_lock:
            self._send(only=_path(path))

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
            pending, self._buffers = self._buffers, {}
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
        with self._lock:
            if only is None:
                paths, self._to_send = list(self._to_send), {}
            else:
                paths = [only] if self._to_send.pop(only, 0) is None else []
            batches = []
            for path in paths:
                shipped = self._shipped.get(path)
                if shipped is not None and shipped[1]:
                    batches.append((path, shipped[0], "".join(shipped[1])))
                    shipped[1].clear()
        for path, send, text in batches:
            try:
                send(text)
            except Exception:  # noqa: BLE001 - e.g. the server is away: kept for the next batch
                with self._lock:  # within a bound
                    shipped = self._shipped.get(path)
                    if shipped is not None:
                        shipped[1].insert(0, text[-MAX_UNSHIPPED:])
                        self._to_send[path] = None

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
