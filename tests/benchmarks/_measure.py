"""Run a command as a child process and report its wall time and peak RSS (os.wait4)."""

from __future__ import annotations

import os
import subprocess
import time


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MiB, exit code, output) of one child process."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    return wall, usage.ru_maxrss / 1024, proc.returncode, out
