"""runtime/proto/generate.py without grpcio-tools: one error naming what to install, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# grpc_tools set to None in sys.modules: importing it fails as if it were not installed
WITHOUT_GRPC_TOOLS = ("import runpy, sys; sys.modules['grpc_tools'] = None; "
                      "runpy.run_path(sys.argv[1], run_name='__main__')")


def test_without_grpc_tools_the_script_says_what_to_install(tmp_path):
    script = ROOT / "runtime" / "proto" / "generate.py"
    before = sorted(p.stat().st_mtime_ns for p in (ROOT / "runtime" / "proto").glob("*_pb2*.py"))
    proc = subprocess.run([sys.executable, "-c", WITHOUT_GRPC_TOOLS, str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and "grpcio-tools" in line, line
    assert "pip install grpcio-tools" in line and ".[test]" in line, line
    after = sorted(p.stat().st_mtime_ns for p in (ROOT / "runtime" / "proto").glob("*_pb2*.py"))
    assert before == after  # nothing was written
