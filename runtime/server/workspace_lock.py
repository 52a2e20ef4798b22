"""One server per workspace: an exclusive lock on WORKSPACE/server.lock, held while it runs.

A second server (or embedded federation, or simulation) on the same workspace would resume the
jobs the first is running and split its admins between them; it is refused instead, naming the
process that holds the workspace. The kernel releases the lock when its holder dies, so a crashed
server never leaves a workspace locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "server.lock"


class WorkspaceLocked(OSError):
    """Another live process holds the workspace."""

    def __init__(self, workspace: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"workspace {workspace} is locked by {who} (a server, an embedded "
                         f"federation or a simulation runs on it): stop it first, or use another workspace")
        self.workspace = workspace
        self.pid = pid


class WorkspaceLock:
    """`acquire()` or raise WorkspaceLocked; `release()` (idempotent) when the server stops."""

    def __init__(self, workspace: str | os.PathLike[str]) -> None:
        self.workspace = Path(workspace)
        self.path = self.workspace / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "WorkspaceLock":
        self.workspace.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = int(os.pread(fd, 32, 0).decode().strip() or 0) or None
            except (OSError, ValueError):
                pid = None
            os.close(fd)
            raise WorkspaceLocked(self.workspace, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the lock

    @property
    def held(self) -> bool:
        return self._fd is not None
