"""The runtime stands alone: no front end, and no torch needed for numpy jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUNTIME_MODULES = [
    "runtime", "runtime.model", "runtime.wire", "runtime.jobs", "runtime.transport",
    "runtime.server.engine", "runtime.server.job_runner", "runtime.workflows",
    "runtime.client", "runtime.client.agent", "runtime.client.executors", "runtime.sim.simulator",
    "runtime.admin", "runtime.server.admin_service", "runtime.server.manager",
    "runtime.federation.process", "runtime.transport.health", "runtime.client.job_process",
    "runtime.client.process_agent", "provisioning",
]


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runtime_imports_no_front_end():
    loaded = _run(
        "import importlib, json, sys\n"
        f"for m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('textual', 'prompt_toolkit', 'flshell', 'rich'))))"
    )
    assert loaded == []


def test_numpy_job_runs_with_torch_hidden(tmp_path):
    """A meta-path blocker makes `import torch` fail, as on a machine without torch."""
    code = (
        "import sys, json\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'torch'\")\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from runtime.sim.simulator import Simulator\n"
        f"sim = Simulator({str(ROOT / 'examples' / 'hello-numpy')!r}, workspace={str(tmp_path)!r}, "
        "n_clients=3, rounds=2)\n"
        "sim.prepare(); sim.start(); res = sim.wait()\n"
        "print(json.dumps({'status': res.status, 'torch': 'torch' in sys.modules}))"
    )
    assert _run(code) == {"status": "COMPLETED", "torch": False}
