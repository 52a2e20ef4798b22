"""Per-thread sys.argv and stdout/stderr, so many sites' scripts can share one process."""

from __future__ import annotations

import io
import sys
import threading
from typing import Any, Callable

_local = threading.local()


class ThreadArgv(list):
    """A `sys.argv` whose contents depend on the calling thread (argparse reads it per call)."""

    def _cur(self) -> list:
        argv = getattr(_local, "argv", None)
        return argv if argv is not None else list(list.__iter__(self))

    def __getitem__(self, i: Any) -> Any:
        return self._cur()[i]

    def __len__(self) -> int:
        return len(self._cur())

    def __iter__(self):
        return iter(self._cur())

    def __repr__(self) -> str:
        return repr(self._cur())


class RoutedStream(io.TextIOBase):
    """Writes from a thread with a bound sink go to that sink; others to the original stream."""

    def __init__(self, original: Any, attr: str) -> None:
        self._original = original
        self._attr = attr

    def _target(self) -> Any:
        sink = getattr(_local, self._attr, None)
        return sink if sink is not None else self._original

    def write(self, s: str) -> int:
        target = self._target()
        if target is self._original:
            return self._original.write(s)
        target(s)
        return len(s)

    def flush(self) -> None:
        if self._target() is self._original:
            self._original.flush()

    def isatty(self) -> bool:
        return self._target() is self._original and self._original.isatty()

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Route sys.argv, sys.stdout and sys.stderr per thread. Idempotent; if someone replaced
    a stream since (a test harness capturing output does), route the new one too."""
    global _installed
    with _install_lock:
        if not isinstance(sys.argv, ThreadArgv):
            sys.argv = ThreadArgv(sys.argv)
        if not isinstance(sys.stdout, RoutedStream):
            sys.stdout = RoutedStream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, RoutedStream):
            sys.stderr = RoutedStream(sys.stderr, "stderr")
        _installed = True


def bind(argv: list[str] | None = None, output: Callable[[str], None] | None = None) -> None:
    """For the calling thread: the argv a script sees and where its prints go."""
    install()
    _local.argv = list(argv) if argv is not None else None
    _local.stdout = output
    _local.stderr = output


def unbind() -> None:
    _local.argv = None
    _local.stdout = None
    _local.stderr = None
