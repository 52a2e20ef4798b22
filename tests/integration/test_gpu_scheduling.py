"""GPU-aware scheduling on a real federation: a server (job manager, site port, admin port) on
127.0.0.1 and `flshell client` processes with a fixed GPU list (`--gpus`, standing in for NVML).

The job (jobs/gpu_report) asks every site for 1 GPU with >= 8 GiB; its script writes what its
process sees (CUDA_VISIBLE_DEVICES, flare.system_info()) to GATES/<job id>.json and holds its GPU
inside its task until the test writes GATES/<job id>.go ("done", or "kill" to SIGKILL the job's
process). So which job holds which GPU, and when, is up to the test, not to timing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.admin import Session
from runtime.resources import GIB
from runtime.server.admin_service import AdminServer
from runtime.jobs import load_job
from tests.integration.conftest import JOBS, REPO, copy_job, edit_json
from tests.integration.test_client_process import Federation, gone, leftovers, wait_for

FINAL = ("COMPLETED", "FAILED", "ABORTED")


class GpuFederation(Federation):
    """test_client_process's server and `flshell client` processes, plus the job manager's
    scheduler and an admin session on the admin port."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.gates = tmp / "gates"
        self.gates.mkdir()
        self.admin = AdminServer(self.manager, "127.0.0.1", 0).start()
        self.session = Session(self.admin.address, timeout=10)
        self.folder = copy_job(JOBS / "gpu_report", tmp)
        edit_json(self.folder / "app" / "config" / "config_client.json",
                  lambda cfg: cfg["executors"][0]["executor"]["args"].update(
                      script_args=f"--gates {shlex.quote(str(self.gates))}"))

    def start_client(self, name: str, gpus: str = "none") -> None:
        """`flshell client --gpus GPUS` for site `name`; returns once it registered them."""
        cmd = [sys.executable, "-m", "flshell.client_cmd", "--workspace", str(self.tmp / name),
               "--name", name, "--server", self.server.address, "--insecure",
               "--heartbeat-interval", "0.1", "--gpus", gpus]
        with open(self.tmp / f"{name}.out", "ab") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        self.clients[name] = proc
        wait_for(lambda: "gpu_inventory" in self.info(name) or proc.poll() is not None, 60,
                 f"{name} to register")
        assert proc.poll() is None, (self.tmp / f"{name}.out").read_text()

    def info(self, site: str) -> dict[str, Any]:
        rec = self.engine.sites.get(site)
        return dict(rec.info) if rec is not None else {}

    def submit(self, resource_spec: Any = None) -> str:
        if resource_spec is not None:
            edit_json(self.folder / "meta.json", lambda m: m.update(resource_spec=resource_spec))
        return self.session.submit_job(self.folder)

    def report(self, job_id: str) -> dict[str, Any]:
        """What the job's script saw, once it started."""
        path = self.gates / f"{job_id}.json"
        wait_for(path.exists, 60, f"job {job_id[:8]} to start on its site")
        return json.loads(path.read_text())

    def release(self, job_id: str, how: str = "done") -> None:
        (self.gates / f"{job_id}.go.tmp").write_text(how)
        (self.gates / f"{job_id}.go.tmp").rename(self.gates / f"{job_id}.go")  # whole or not at all

    def listed(self, job_id: str) -> dict[str, Any]:
        """The job as the admin port's list_jobs shows it."""
        return next(j for j in self.session.list_jobs() if j["job_id"] == job_id)

    def wait_status(self, job_id: str, *statuses: str) -> dict[str, Any]:
        wait_for(lambda: self.listed(job_id)["status"] in statuses, 60,
                 f"job {job_id[:8]} to be {' or '.join(statuses)}")
        return self.listed(job_id)

    def close(self) -> None:
        self.session.close()
        self.admin.stop(0)
        self.manager.stop(abort_running=True, timeout=10)
        super().close()


@pytest.fixture
def fed(tmp_path):
    f = GpuFederation(tmp_path)
    try:
        yield f
    finally:
        f.close()
    assert leftovers(tmp_path) == []


def test_two_jobs_get_different_gpus_and_a_third_waits_until_one_ends(fed):
    fed.start_client("site-1", "0:16,1:16")
    assert fed.info("site-1")["gpu_inventory"] == [{"index": 0, "mem_total": 16 * GIB},
                                                    {"index": 1, "mem_total": 16 * GIB}]
    first, second, third = fed.submit(), fed.submit(), fed.submit()
    seen = {job: fed.report(job) for job in (first, second)}
    for job, gpu in ((first, "0"), (second, "1")):  # oldest first, lowest free GPU first
        assert seen[job]["CUDA_VISIBLE_DEVICES"] == gpu
        assert seen[job]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert seen[job]["system_info"]["gpu"] == gpu
        assert seen[job]["system_info"]["job_id"] == job
        assert "gpu_inventory" not in seen[job]["system_info"]  # the agent's, not the script's
    wait_for(lambda: fed.info("site-1").get("gpu_alloc") == {first: [0], second: [1]}, 30,
             "site-1's heartbeat to report both allocations")

    waiting = fed.wait_status(third, "WAITING")
    reason = waiting["reason"]
    assert reason.startswith("waiting for GPUs: site-1 needs 1 GPU(s) with >= 8 GiB, 0 of 2 free "
                             f"(GPU 0 held by job {first[:8]}, GPU 1 held by job {second[:8]})"), reason
    assert not (fed.gates / f"{third}.json").exists()
    too_big = fed.submit(resource_spec={"site-1": {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 24}})
    assert fed.wait_status(too_big, "WAITING")["reason"] == (
        "waiting for GPUs: site-1 needs 1 GPU(s) with >= 24 GiB, 0 of its 2 have that much memory "
        "(GPU 0: 16 GiB, GPU 1: 16 GiB)")

    fed.release(second)
    assert fed.wait_status(second, *FINAL)["status"] == "COMPLETED"
    assert fed.report(third)["CUDA_VISIBLE_DEVICES"] == "1"  # the one the second job freed
    wait_for(lambda: fed.info("site-1").get("gpu_alloc") == {first: [0], third: [1]}, 30,
             "site-1's heartbeat to show the third job on GPU 1")
    for job in (first, third):
        fed.release(job)
    for job in (first, third):
        assert fed.wait_status(job, *FINAL)["status"] == "COMPLETED"
    wait_for(lambda: fed.info("site-1").get("gpu_alloc") == {}, 30, "site-1 to free every GPU")


def test_a_killed_job_process_frees_its_gpu_for_the_waiting_job(fed):
    fed.start_client("site-1", "0:16")
    crashing, waiting = fed.submit(), fed.submit()
    pid = fed.report(crashing)["pid"]  # the script runs in its job's process
    held = f"waiting for GPUs: site-1 needs 1 GPU(s) with >= 8 GiB, 0 of 1 free (GPU 0 held by job {crashing[:8]})"
    wait_for(lambda: fed.listed(waiting).get("reason") == held, 30, "the second job to wait for GPU 0")

    fed.release(crashing, "kill")
    ended = fed.wait_status(crashing, *FINAL)
    assert ended["status"] == "FAILED"
    assert gone(pid)
    assert fed.report(waiting)["CUDA_VISIBLE_DEVICES"] == "0"
    fed.release(waiting)
    assert fed.wait_status(waiting, *FINAL)["status"] == "COMPLETED"
    site_log = fed.tmp / "site-1" / "log.txt"  # the agent writes its log in batches
    wait_for(lambda: site_log.is_file() and f"job {crashing} freed GPU(s) 0" in site_log.read_text(),
             30, "the site's log to say the crashed job's GPU was freed")


def test_a_job_needing_gpus_waits_at_a_site_without_any_and_holds_up_no_other_job(fed):
    fed.start_client("site-1", "none")
    assert fed.info("site-1")["gpu_inventory"] == []
    needs_gpu = fed.submit()
    assert fed.wait_status(needs_gpu, "WAITING")["reason"] == "waiting for GPUs: site-1 has no GPUs"
    plain = fed.submit(resource_spec={})  # submitted later, asks for no GPU: it runs
    seen = fed.report(plain)
    assert seen["CUDA_VISIBLE_DEVICES"] == os.environ.get("CUDA_VISIBLE_DEVICES")  # inherited
    assert "gpu" not in seen["system_info"]
    fed.release(plain)
    assert fed.wait_status(plain, *FINAL)["status"] == "COMPLETED"
    assert fed.listed(needs_gpu)["status"] == "WAITING"


def test_a_site_refuses_a_job_it_has_no_gpus_for_even_when_the_server_sends_it(fed):
    fed.start_client("site-1", "0:16")
    edit_json(fed.folder / "meta.json",
              lambda m: m.update(resource_spec={"site-1": {"num_of_gpus": 2}}))
    fed.manager.stop()  # no scheduler: the job goes past placement, straight to the site
    job_id = fed.manager.submit_folder(fed.folder, "test")
    runner = fed.manager.make_runner(job_id, load_job(fed.manager.store.get(job_id).folder), ["site-1"])
    runner.prepare()
    runner.start()
    assert runner.wait(60) == "FAILED"
    detail = runner.failure_details["site-1"]
    assert detail == (f"job {runner.job_id} could not start on site-1: site-1 needs 2 GPU(s), has 1"), detail
    assert fed.info("site-1")["gpu_alloc"] == {}


@pytest.mark.parametrize("gpus, message", [
    ("0,x", "--gpus: expected GPU ids like 0,1 or id:GiB like 0:16,1:16 (or none), got '0,x'"),
    ("0:big", "--gpus: GPU 0: expected its memory in GiB (a number > 0) after ':', got 'big'"),
    ("1,1", "--gpus: GPU 1 is listed twice in '1,1'"),
])
def test_client_command_says_what_is_wrong_with_its_gpu_list(tmp_path, capsys, gpus, message):
    from flshell import client_cmd, exit_codes

    code = client_cmd.main(["--workspace", str(tmp_path / "ws"), "--name", "site-1", "--insecure",
                            "--server", "127.0.0.1:1", "--gpus", gpus])
    err = capsys.readouterr().err
    assert code == exit_codes.USAGE and message in err, err
