"""PocEnv end to end: a real POC started with the CLI (`flshell poc prepare/start`), a numpy
recipe executed on it gives the global model SimEnv gives; clear errors when there is no POC,
when its server is down, or when it has too few sites; no process left behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime.admin import Session
from runtime.recipes import EnvError, NumpyFedAvgRecipe, PocEnv, ProdEnv, SimEnv
from tests.integration.conftest import procs_mentioning, run_flshell

SCRIPT = Path(__file__).resolve().parent / "recipe_scripts" / "np_client.py"
WAIT = 120  # seconds; a run takes a few, this only catches hangs


def np_recipe(**kw) -> NumpyFedAvgRecipe:
    args = dict(name="np-poc", min_clients=2, num_rounds=3, train_script=str(SCRIPT),
                initial_model={"w": np.zeros(3)}, key_metric="score")
    args.update(kw)
    return NumpyFedAvgRecipe(**args)


def load(result_dir: str | Path) -> np.ndarray:
    with np.load(Path(result_dir) / "global_model.npz", allow_pickle=False) as d:
        return d["w"]


def _prepare(poc: Path, n: int = 2) -> None:
    r = run_flshell("poc", "prepare", "-n", n, "-w", poc)
    assert r.returncode == 0, r.stdout + r.stderr


def _stop(poc: Path) -> None:
    r = run_flshell("poc", "stop", "-w", poc)
    assert r.returncode == 0, r.stdout + r.stderr
    left = procs_mentioning(str(poc))
    assert not left, [p.info["cmdline"] for p in left]


def test_recipe_on_poc_matches_simenv(tmp_path):
    poc, runs = tmp_path / "poc", tmp_path / "runs"
    _prepare(poc)
    r = run_flshell("poc", "start", "-w", poc)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        run = np_recipe().execute(PocEnv(poc_workspace=poc, num_clients=2, workspace_root=runs,
                                         timeout=WAIT))
        assert run.get_status() == "COMPLETED", run.get_job()
        job_id = run.get_job_id()
        result = run.get_result()
        assert result == str(runs / job_id / "result")
        on_poc = load(result)
        np.testing.assert_allclose(on_poc, [4.5] * 3, atol=1e-12)  # 3 rounds of mean(1, 2)
        assert run.get_metrics()["score"] == pytest.approx(3.0)  # mean(w) before round 3
        assert "round 3/3 completed" in run.get_log() and run.get_log("site-2").strip()
        assert (runs / job_id / "logs" / "site-1.log").is_file()

        sim = np_recipe().execute(SimEnv(num_clients=2, workspace_root=tmp_path / "sim"))
        assert sim.get_status() == "COMPLETED"
        np.testing.assert_array_equal(on_poc, load(sim.get_result()))
        assert sim.get_metrics()["score"] == run.get_metrics()["score"]

        # the (secure) POC's server through its admin startup kit, as on a provisioned
        # federation; wait=False returns at once, wait() downloads
        address = json.loads((poc / "poc.json").read_text())["admin_address"]
        kit = poc / "prod" / "admin@poc"
        run2 = np_recipe(name="np-poc-2").execute(
            ProdEnv(kit, username="admin@poc", workspace_root=runs, wait=False))
        assert run2.workspace is None
        assert run2.wait(WAIT) == "COMPLETED"
        np.testing.assert_array_equal(load(run2.get_result()), on_poc)
        assert run2.workspace == runs / run2.get_job_id()

        # too few sites: refused before anything is submitted
        with pytest.raises(EnvError, match=r"num_clients=3 needs 3 connected sites.*has 2 \(site-1, site-2\)"
                                           r".*prepare -n 3"):
            np_recipe().execute(PocEnv(poc_workspace=poc, num_clients=3, workspace_root=runs))
        with pytest.raises(EnvError, match="min_clients=3 needs 3 connected sites"):
            np_recipe(min_clients=3).execute(PocEnv(poc_workspace=poc, workspace_root=runs))
        with Session.from_startup_kit(kit, address=address) as s:
            assert len(s.list_jobs()) == 2
            assert {j["submitter"] for j in s.list_jobs()} == {"admin@poc"}  # the certificate's
    finally:
        _stop(poc)


def test_no_poc_or_a_stopped_one_is_a_clear_error_and_start_true_starts_it(tmp_path):
    missing = tmp_path / "no-such-poc"
    with pytest.raises(EnvError, match=rf"no POC workspace at {missing}.*flshell poc prepare -n N"
                                       r".*flshell poc start"):
        np_recipe().execute(PocEnv(poc_workspace=missing))
    assert not missing.exists()

    poc = tmp_path / "poc"
    _prepare(poc)
    with pytest.raises(EnvError, match=r"does not answer at 127\.0\.0\.1:\d+: start it with "
                                       r"`flshell poc start -w .*PocEnv\(start=True\)"):
        np_recipe().execute(PocEnv(poc_workspace=poc, connect_timeout=3))
    try:
        run = np_recipe().execute(PocEnv(poc_workspace=poc, start=True, num_clients=2,
                                         workspace_root=tmp_path / "runs", timeout=WAIT))
        assert run.get_status() == "COMPLETED"
        np.testing.assert_allclose(load(run.get_result()), [4.5] * 3, atol=1e-12)
    finally:
        _stop(poc)
