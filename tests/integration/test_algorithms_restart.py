"""SCAFFOLD's control variates and FedOpt's optimizer state survive a server crash: a job
whose `flshell server` is SIGKILLed mid-job and restarted on the same workspace ends with the
same model, bit for bit, as the same job never interrupted (the simulator's run of it)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.conftest import copy_job, edit_json
from tests.integration.procfed import ProcFederation, wait_until
from tests.integration.test_algorithms import QUAD, ref_fedopt, ref_scaffold, simulate

SITES = 5


def configured(tmp_path, name: str, path: str, args: dict, sleep: float):
    job = copy_job(QUAD, tmp_path, name)
    edit_json(job / "app" / "config" / "config_server.json", lambda c: c.update(workflows=[
        {"id": "train", "path": path, "args": {"initial_model": {"w": [0.0, 0.0, 0.0]}, **args}}]))
    edit_json(job / "app" / "config" / "config_client.json",
              lambda c: c["executors"][0]["executor"]["args"].update(
                  script_args=f"--lr 0.05 --sleep {sleep}"))
    return job


def rounds_done(fed: ProcFederation, job_id: str) -> int:
    with fed.session() as s:
        return len(s.get_job(job_id)["rounds"])


@pytest.mark.parametrize("path, args, reference", [
    ("runtime.workflows.Scaffold", {"num_rounds": 8}, lambda: ref_scaffold(8, 0.05)),
    ("runtime.workflows.FedOpt", {"num_rounds": 8, "optimizer": "adam", "server_lr": 0.1,
                                  "betas": [0.9, 0.99]},
     lambda: ref_fedopt(8, 0.05, "adam", 0.1, b1=0.9, b2=0.99)),
])
def test_a_server_killed_mid_job_ends_with_the_uninterrupted_model(tmp_path, path, args, reference):
    uninterrupted = simulate(tmp_path, path, args, name="whole")[-1]
    job = configured(tmp_path, "killed", path, args, sleep=0.15)
    (tmp_path / "fed").mkdir()
    with ProcFederation(tmp_path / "fed") as fed:
        job_id = fed.start_with_job(job, [f"site-{k}" for k in range(1, SITES + 1)])
        wait_until(lambda: rounds_done(fed, job_id) >= 3, 120, "round 3 to complete")
        fed.kill_server()
        fed.start_server(same_ports=True)
        with fed.session() as s:
            final = s.wait_for_job(job_id, timeout=180)
            rounds = s.get_job(job_id)["rounds"]
            history = [t["reason"] for t in s.get_job(job_id)["transitions"]]
        assert final["status"] == "COMPLETED", final
        assert [r["round"] for r in rounds] == list(range(8))
        assert any((why or "").startswith("resumed after round") for why in history), history
        with np.load(fed.ws / "jobs" / job_id / "result" / "global_model.npz", allow_pickle=False) as d:
            resumed = d["w"]
    assert np.array_equal(resumed, uninterrupted), (resumed, uninterrupted)
    np.testing.assert_allclose(resumed, reference()[-1], rtol=0, atol=1e-9)
