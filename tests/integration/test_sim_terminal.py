"""`flshell sim` in a terminal: the real CLI on a pseudo-terminal (so rich draws its live progress
bar), interrupted with Ctrl-C the way a terminal sends it: SIGINT to the whole process group."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.integration.conftest import JOBS, _cli_env, copy_job, edit_json

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")


class Terminal:
    """A child process on a 120x40 pseudo-terminal, in a session of its own; `read_until` and
    `read_to_end` collect what it wrote (escape codes removed) with deadlines."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = _cli_env()
        env.pop("NO_COLOR", None)
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen([sys.executable, "-m", "flshell.cli", *args], cwd=cwd,
                                     stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.master = master
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", errors="replace"))

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False at end of output."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.raw += data
        return bool(data)

    def wait_for(self, what, timeout: float, why: str) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, f"timed out waiting for {why}; output:\n{self.text}"
            if not self._read(0.1):
                assert what(), f"the process ended before {why}; output:\n{self.text}"

    def read_to_end(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.1):
            assert time.monotonic() < deadline, f"still running after {timeout}s:\n{self.text}"
        return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        os.close(self.master)


def test_after_ctrl_c_nothing_from_the_sites_reaches_the_terminal(tmp_path):
    """slow_site: site-3 stalls 4 s in round 1, then prints "site-3: round 1/3". Ctrl-C while it
    stalls: the abort waits (up to 5 s) for its script to return, and what the script prints
    meanwhile belongs in its log, not under the interrupt message."""
    job = copy_job(JOBS / "slow_site", tmp_path)

    def stall_4s(cfg):
        cfg["executors"][0]["executor"]["args"]["script_args"] = "--slow-site site-3 --sleep 4"

    edit_json(job / "app" / "config" / "config_client.json", stall_4s)
    ws = tmp_path / "ws"
    term = Terminal(["sim", str(job), "-n", "3", "-w", str(ws)], cwd=tmp_path)

    def stalling() -> bool:  # the script marks its stall in the job's folder at once (no log batch)
        return any(ws.glob("site-3/jobs/*/stalled"))

    try:
        term.wait_for(stalling, 60, "site-3 to stall")
        term.ctrl_c()
        code = term.read_to_end(60)
    finally:
        term.close()
    out = term.text
    assert code == 130, out
    before, sep, after = out.partition("Ctrl-C: aborting the job...")
    assert sep, out
    assert "ABORTED" in after, out
    assert "site-3: round 1/3" not in out, out  # printed after the interrupt, into its log only
    assert "site-3: stalling" not in before, out  # (and before it too: prints never reach here)
    (log,) = ws.glob("site-3/jobs/*/log.txt")
    assert "site-3: round 1/3" in log.read_text()


def test_a_second_ctrl_c_leaves_at_once_without_a_traceback(tmp_path):
    """The first Ctrl-C aborts and waits for the sites' scripts to return; site-3's sleeps 60 s.
    A second Ctrl-C means "now": one line, exit 130, no traceback, well before the script wakes."""
    job = copy_job(JOBS / "slow_site", tmp_path)  # site-3 stalls 60 s in round 1
    ws = tmp_path / "ws"
    term = Terminal(["sim", str(job), "-n", "3", "-w", str(ws)], cwd=tmp_path)

    def stalling() -> bool:
        return any("site-3: stalling" in p.read_text() for p in ws.glob("site-3/jobs/*/log.txt"))

    try:
        term.wait_for(stalling, 60, "site-3 to stall")
        term.ctrl_c()
        term.wait_for(lambda: "Ctrl-C: aborting the job..." in term.text, 30, "the first interrupt's message")
        term.ctrl_c()
        code = term.read_to_end(30)  # the stalled script would hold it for 60 s
    finally:
        term.close()
    out = term.text
    assert code == 130, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "Ctrl-C again" in out, out
    # what the sites had written until then is in their logs
    (log,) = ws.glob("site-3/jobs/*/log.txt")
    assert "site-3: stalling" in log.read_text()
