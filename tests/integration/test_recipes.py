"""Recipes end to end: export == execute, external processes, TensorBoard files, hello-pt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.recipes import NumpyFedAvgRecipe, SimEnv, add_experiment_tracking

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "recipe_scripts" / "np_client.py"
ROOT = HERE.parents[1]


def np_recipe(**kw) -> NumpyFedAvgRecipe:
    args = dict(name="np-recipe", min_clients=3, num_rounds=3, train_script=str(SCRIPT),
                initial_model={"w": np.zeros(3)}, key_metric="score")
    args.update(kw)
    return NumpyFedAvgRecipe(**args)


def load(result_dir: str | Path, name: str = "global_model") -> np.ndarray:
    with np.load(Path(result_dir) / f"{name}.npz", allow_pickle=False) as d:
        return d["w"]


def test_recipe_and_its_exported_job_give_the_same_model(tmp_path):
    recipe = np_recipe()
    add_experiment_tracking(recipe)
    run = recipe.execute(SimEnv(num_clients=3, workspace_root=tmp_path / "ws"))
    assert run.get_status() == "COMPLETED"
    from_recipe = load(run.get_result())
    np.testing.assert_allclose(from_recipe, [3 * 2.0] * 3, atol=1e-12)  # 3 rounds of mean(1,2,3)

    job = np_recipe().export(tmp_path / "job")
    proc = subprocess.run([sys.executable, "-m", "flshell.cli", "sim", str(job), "-n", "3", "-q",
                           "-w", str(tmp_path / "ws2")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exported = sorted((tmp_path / "ws2" / "server" / "jobs").glob("*/result"))[0]
    np.testing.assert_array_equal(load(exported), from_recipe)


def test_tensorboard_files_hold_site_and_round_metrics(tmp_path):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                 reason="tensorboard is in the test extra")
    run = np_recipe(min_clients=2).execute(SimEnv(num_clients=2, workspace_root=tmp_path))
    tb = Path(run.get_result()) / "tb"
    site = ea_mod.EventAccumulator(str(tb / "site-2")).Reload()
    scalars = site.Scalars("local_delta")
    assert [s.step for s in scalars] == [0, 1, 2] and {s.value for s in scalars} == {2.0}
    server = ea_mod.EventAccumulator(str(tb / "server")).Reload()
    assert [s.step for s in server.Scalars("score")] == [0, 1, 2]


@pytest.mark.parametrize("external, processes", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["in-process", "external", "workers", "workers+external"])
def test_external_process_gives_the_same_result(tmp_path, external, processes):
    """Scripts in the site's thread or their own process; sites in this process or in two
    worker processes (SimEnv(processes=True)): the same model."""
    run = np_recipe(launch_external_process=external).execute(
        SimEnv(num_clients=3, num_threads=2 if processes else None, processes=processes,
               workspace_root=tmp_path))
    assert run.get_status() == "COMPLETED"
    np.testing.assert_allclose(load(run.get_result()), [6.0] * 3, atol=1e-12)


def test_crashing_external_script_fails_the_run_with_site_code_and_stderr(tmp_path):
    recipe = np_recipe(launch_external_process=True, train_args="site-2")
    run = recipe.execute(SimEnv(num_clients=3, workspace_root=tmp_path))
    assert run.get_status() == "FAILED"
    sim = run.sim.result()
    detail = sim.failure_details["site-2"]
    assert "exited with code 7" in detail and "about to fail on purpose" in detail
    assert "site-2" in sim.reason


def test_external_script_that_returns_early_fails_its_task_not_the_site(tmp_path):
    recipe = np_recipe(launch_external_process=True, train_args="site-2 return", min_clients=2)
    run = recipe.execute(SimEnv(num_clients=3, workspace_root=tmp_path))
    assert run.get_status() == "COMPLETED"  # 2 of 3 results are enough
    rounds = (run.sim.result().job_dir / "metrics.jsonl").read_text().splitlines()
    assert '"sites_failed": ["site-2"]' in rounds[1]
    log = run.sim.result().server_log.read_text()
    assert "site-2" in log and "exited with code 0" in log


def test_diff_transfer_gives_the_same_model(tmp_path):
    run = np_recipe(params_transfer_type="DIFF").execute(SimEnv(num_clients=3, workspace_root=tmp_path))
    assert run.get_status() == "COMPLETED"
    np.testing.assert_allclose(load(run.get_result()), [6.0] * 3, atol=1e-12)


def test_bad_recipe_arguments_are_named():
    from runtime.jobs.errors import ArgError

    with pytest.raises(ArgError, match="num_rounds"):
        np_recipe(num_rounds=0)
    with pytest.raises(ArgError, match="params_transfer_type"):
        np_recipe(params_transfer_type="HALF")
    with pytest.raises(ArgError, match="train_script"):
        np_recipe(train_script="no_such_script.py")


def test_torch_sites_with_a_numpy_server(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is optional; .ci/run installs it")
    from runtime.recipes import FedAvgRecipe

    script = tmp_path / "pt_client.py"
    script.write_text(
        "import torch\n"
        "import runtime.client as flare\n"
        "flare.init()\n"
        "while flare.is_running():\n"
        "    m = flare.receive()\n"
        "    assert all(isinstance(v, torch.Tensor) for v in m.params.values()), m.params\n"
        "    flare.send(flare.FLModel(params={k: v + 1 for k, v in m.params.items()}))\n"
    )
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    seen = {}
    for fmt in ("numpy", "torch"):
        run = FedAvgRecipe(name=f"pt-{fmt}", initial_model=net, min_clients=2, num_rounds=2,
                           train_script=str(script), server_expected_format=fmt).execute(
            SimEnv(num_clients=2, workspace_root=tmp_path))
        assert run.get_status() == "COMPLETED"
        with np.load(Path(run.get_result()) / "global_model.npz", allow_pickle=False) as d:
            seen[fmt] = {k: d[k] for k in d.files}
        assert (Path(run.get_result()) / "global_model.pt").exists() == (fmt == "torch")
    for key, value in start.items():
        np.testing.assert_allclose(seen["numpy"][key], value.numpy() + 2, rtol=1e-6)
        np.testing.assert_array_equal(seen["numpy"][key], seen["torch"][key])
