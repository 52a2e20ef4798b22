"""Per-GPU load (runtime.monitor.load): GPU processes named by the job whose process they descend
from (a real process tree), GPUs read through a fixed inventory standing in for NVML, and a host
without NVML or without GPUs reported as such, never as an error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runtime.monitor import gpu_load, gpu_status, job_for_pid, load_report, use_nvml
from tests.gpu_standins import FakeGpu, FixedNvml, process_tree

@pytest.fixture
def tree(tmp_path):
    """A job process, the script it launched, and a process that script launched: their pids."""
    with process_tree(tmp_path, depth=2) as pids:
        yield pids


@pytest.fixture
def nvml():
    def use(*gpus: FakeGpu, **kw) -> FixedNvml:
        fixed = FixedNvml(*gpus, **kw)
        use_nvml(fixed)
        return fixed
    yield use
    use_nvml(None)


def test_a_process_counts_for_the_job_it_descends_from(tree):
    job_proc, script, grandchild = tree
    jobs = {job_proc: "job-a", 999_999_999: "job-b"}
    assert [job_for_pid(p, jobs) for p in tree] == ["job-a", "job-a", "job-a"]
    assert job_for_pid(grandchild, {script: "job-c", job_proc: "job-a"}) == "job-c"  # the nearest
    assert job_for_pid(grandchild, jobs, depth=1) is None  # its parent is no job's; no further look
    assert job_for_pid(os.getpid(), jobs) is None  # the job's parent is not the job's
    assert job_for_pid(grandchild, {}) is None


def test_a_vanished_process_belongs_to_no_job(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert job_for_pid(gone.pid, {os.getpid(): "job-a"}) is None


def test_gpu_processes_are_named_by_their_jobs_through_the_process_tree(tree, nvml):
    job_proc, script, grandchild = tree
    nvml(FakeGpu(util=71, mem_used=40 * 1024**3, temperature=63, power_mw=212_500,
                 pids={script: 30 * 1024**3, 4_000_000: 1024}),
         FakeGpu(name="NVIDIA A100", pids={grandchild: 5}))
    gpus = gpu_load({job_proc: "job-a"})
    assert [g["index"] for g in gpus] == [0, 1]
    first = gpus[0]
    assert (first["name"], first["util_percent"], first["mem_used"], first["mem_total"]) == (
        "NVIDIA H100 80GB HBM3", 71, 40 * 1024**3, 80 * 1024**3)
    assert (first["temperature_c"], first["power_w"]) == (63, 212.5)
    assert first["processes"] == [{"pid": script, "job_id": "job-a", "mem_used": 30 * 1024**3},
                                  {"pid": 4_000_000, "job_id": None, "mem_used": 1024}]  # not ours
    assert gpus[1]["processes"] == [{"pid": grandchild, "job_id": "job-a", "mem_used": 5}]
    report = load_report({"job-a": job_proc, "job-b": None})
    assert report["gpus"][1]["processes"][0]["job_id"] == "job-a" and report["gpu_note"] is None
    assert report["host"]["mem_total"] > 0


def test_no_nvml_means_no_gpu_and_a_note_that_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    use_nvml(None)
    try:
        assert gpu_load({1: "job"}) == []
        note = gpu_status()
        assert note.startswith("no NVML: ModuleNotFoundError") and "pynvml" in note
        assert load_report()["gpu_note"] == note
    finally:
        use_nvml(None)


def test_nvml_without_gpus_or_one_that_fails_says_no_gpu(nvml):
    nvml()
    assert gpu_load() == [] and gpu_status() == "no GPU" and load_report()["gpu_note"] == "no GPU"
    nvml(FakeGpu(), fail_count=True)
    assert gpu_load() == [] and gpu_status().startswith("no GPU: NVML could not count them")
