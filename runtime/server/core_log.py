"""What gRPC's C core says on stderr about refused TLS handshakes, into the server's log and audit.

A peer refused during the TLS handshake (no certificate, another CA's, an expired one, plain text
on a TLS port) never reaches our servicers: only gRPC's core sees it, and it writes one line to
file descriptor 2 ("Handshake failed with error SSL_ERROR_SSL: ... CERTIFICATE_VERIFY_FAILED").
`CoreLogTap` puts a pipe behind fd 2, copies everything to the real stderr, and hands each such
line to a callback (the server logs a warning and writes an audit entry). gRPC does not say which
peer failed, so neither can we.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Callable

HANDSHAKE_FAILED = re.compile(r"Handshake failed with (?:fatal )?error (\S+?):? (.*)$")


class CoreLogTap:
    """`start()` routes fd 2 through a pipe read by a thread; `stop()` puts fd 2 back."""

    def __init__(self, on_handshake_failure: Callable[[str], None]) -> None:
        self.on_handshake_failure = on_handshake_failure
        self._stderr: int | None = None
        self._read: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "CoreLogTap":
        read, write = os.pipe()
        self._stderr = os.dup(2)
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self._thread = threading.Thread(target=self._pump, name="core-log", daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        assert self._read is not None and self._stderr is not None
        pending = b""
        while True:
            try:
                data = os.read(self._read, 65536)
            except OSError:
                return
            if not data:
                break
            try:
                os.write(self._stderr, data)  # stderr stays what it was, line for line
            except OSError:
                pass
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._look_at(line.decode("utf-8", errors="replace"))
            pending = pending[-65536:]
        if pending:
            self._look_at(pending.decode("utf-8", errors="replace"))

    def _look_at(self, line: str) -> None:
        m = HANDSHAKE_FAILED.search(line)
        if m is None:
            return
        try:
            self.on_handshake_failure(f"{m.group(1)}: {m.group(2).strip()}")
        except Exception:  # noqa: BLE001 - a failing callback must not stop stderr
            pass

    def stop(self) -> None:
        """Put the real stderr back on fd 2 and let the thread read what is left."""
        if self._stderr is None:
            return
        os.dup2(self._stderr, 2)  # the pipe's last writer is gone: the thread sees its end
        if self._thread is not None:
            self._thread.join(2.0)
        for fd in (self._read, self._stderr):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._stderr = self._read = None
