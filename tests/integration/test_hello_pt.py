"""hello-pt: accuracy climbs over rounds; its exported job folder, and the example folder itself as
a job folder, give the same model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="hello-pt needs torch (installed by .ci/run)")

ROOT = Path(__file__).resolve().parents[2]
JOB_PY = ROOT / "examples" / "hello-pt" / "job.py"
SMALL = ["--n_clients", "4", "--num_rounds", "4", "--samples", "256"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def _job_dir(ws: Path) -> Path:
    (job,) = (ws / "hello-pt" / "server" / "jobs").iterdir() if (ws / "hello-pt").exists() \
        else (ws / "server" / "jobs").iterdir()
    return job


def test_accuracy_climbs_and_export_matches(tmp_path):
    out = _run([sys.executable, str(JOB_PY), *SMALL, "--workspace", str(tmp_path / "ws")])
    assert "Job Status is: COMPLETED" in out.stdout
    job = _job_dir(tmp_path / "ws")
    rounds = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    acc = [r["metrics"]["accuracy"] for r in rounds]  # of the model each round started from
    assert len(acc) == 4
    assert acc[-1] > acc[0] + 0.2, acc  # clearly learning, not noise
    assert (job / "result" / "global_model.pt").is_file()

    export = tmp_path / "exported"
    _run([sys.executable, str(JOB_PY), *SMALL, "--export", "--export-dir", str(export)])
    _run([sys.executable, "-m", "flshell.cli", "sim", str(export), "-n", "4", "-q",
          "-w", str(tmp_path / "ws2")])
    a = torch.load(job / "result" / "global_model.pt", weights_only=True)
    b = torch.load(_job_dir(tmp_path / "ws2") / "result" / "global_model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit for bit: aggregation is order-free


def test_the_example_folder_is_the_same_job(tmp_path):
    """`flshell sim examples/hello-pt` (its meta.json and app/) starts from the same seeded model
    and trains the same way as job.py's recipe: the same final model, bit for bit."""
    _run([sys.executable, str(JOB_PY), "--n_clients", "2", "--num_rounds", "2",
          "--workspace", str(tmp_path / "ws")])
    _run([sys.executable, "-m", "flshell.cli", "sim", str(JOB_PY.parent), "-n", "2",
          "--rounds", "2", "-q", "-w", str(tmp_path / "ws2")])
    a = torch.load(_job_dir(tmp_path / "ws") / "result" / "global_model.pt", weights_only=True)
    b = torch.load(_job_dir(tmp_path / "ws2") / "result" / "global_model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit for bit: aggregation is order-free
