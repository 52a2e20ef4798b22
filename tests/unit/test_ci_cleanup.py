""".ci/end_ours.py ends exactly the processes a CI run started (its environment marker), also
those that left its process group, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

END_OURS = Path(__file__).resolve().parents[2] / ".ci" / "end_ours.py"


def alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


def test_it_ends_the_runs_processes_and_leaves_others_alone(tmp_path):
    marker = f"test-{os.getpid()}"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(sleep, env={**os.environ, "FLSHELL_CI_RUN": marker},
                            start_new_session=True)  # as a site's job process leaves the group
    other = subprocess.Popen(sleep, env={**os.environ, "FLSHELL_CI_RUN": marker + "-other"})
    group = subprocess.Popen(sleep, start_new_session=True)  # the "pytest" group, no marker
    try:
        subprocess.run([sys.executable, str(END_OURS), marker, str(group.pid)], check=True,
                       timeout=30, env={k: v for k, v in os.environ.items() if k != "FLSHELL_CI_RUN"})
        assert ours.wait(10) is not None and group.wait(10) is not None
        assert alive(other)
    finally:
        for p in (ours, other, group):
            if alive(p):
                p.kill()
            p.wait(10)
    assert not psutil.pid_exists(ours.pid) or psutil.Process(ours.pid).status() == "zombie"
