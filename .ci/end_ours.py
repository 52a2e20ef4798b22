"""End what a CI run started and left behind: the processes whose environment carries the run's
FLSHELL_CI_RUN marker, and the pytest process group; by pid, never by a name pattern."""

from __future__ import annotations

import os
import signal
import sys
import time


def ours(marker: str) -> list[int]:
    needle = f"FLSHELL_CI_RUN={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone, or not ours to read
            pass
    return found


def main() -> int:
    marker, pgid = sys.argv[1], int(sys.argv[2])
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    left = ours(marker)
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while (left := ours(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        print(f"ended {len(left)} processes the tests left behind: {left}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
