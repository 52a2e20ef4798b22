"""The algorithms' recipes, one class each for torch modules and numpy dicts: their jobs run on
the simulator and give the paper-formula trajectories of test_algorithms; numpy jobs of every
algorithm run where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.jobs.errors import ArgError
from runtime.recipes import (CyclicRecipe, FedAvgRecipe, FedNovaRecipe, FedOptRecipe, FedProxRecipe,
                             ScaffoldRecipe, SimEnv, add_cross_site_evaluation)
from tests.integration.test_algorithms import QUAD, ref_fedavg, ref_fedopt, ref_scaffold

HERE = Path(__file__).resolve().parent
NP_SCRIPT = QUAD / "app" / "custom" / "quadratic.py"
TORCH_SCRIPT = HERE / "recipe_scripts" / "quadratic_torch.py"
ROOT = HERE.parents[1]

RECIPES = {
    "fedavg": (FedAvgRecipe, {}, lambda: ref_fedavg(3, 0.05)),
    "fedprox": (FedProxRecipe, {"mu": 0.5}, lambda: ref_fedavg(3, 0.05, mu=0.5)),
    "fednova": (FedNovaRecipe, {}, None),
    "scaffold": (ScaffoldRecipe, {}, lambda: ref_scaffold(3, 0.05)),
    "fedopt": (FedOptRecipe, {"optimizer": "adam", "server_lr": 0.1},
               lambda: ref_fedopt(3, 0.05, "adam", 0.1)),
    "median": (FedAvgRecipe, {"aggregator": "median"}, None),
    "cyclic": (CyclicRecipe, {}, None),
}


def final(run) -> np.ndarray:
    with np.load(Path(run.get_result()) / "global_model.npz", allow_pickle=False) as d:
        return d["w"]


@pytest.mark.parametrize("algo", sorted(RECIPES))
def test_numpy_recipes_run_and_follow_the_reference(tmp_path, algo):
    cls, extra, reference = RECIPES[algo]
    recipe = cls(f"q-{algo}", initial_model={"w": np.zeros(3)}, min_clients=5, num_rounds=3,
                 train_script=str(NP_SCRIPT), train_args="--lr 0.05", **extra)
    run = recipe.execute(SimEnv(num_clients=5, workspace_root=tmp_path))
    assert run.get_status() == "COMPLETED", run.get_log()
    if reference is not None:
        np.testing.assert_allclose(final(run), reference()[-1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("algo", ["fedprox", "scaffold"])
def test_torch_recipes_use_the_torch_helpers_and_follow_the_reference(tmp_path, algo):
    torch = pytest.importorskip("torch", reason="the torch helpers need torch (the test extra has it)")

    class Point(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))

    cls, extra, reference = RECIPES[algo]
    recipe = cls(f"qt-{algo}", initial_model=Point(), min_clients=5, num_rounds=3,
                 train_script=str(TORCH_SCRIPT), **extra)
    run = recipe.execute(SimEnv(num_clients=5, workspace_root=tmp_path))
    assert run.get_status() == "COMPLETED", run.get_log()
    np.testing.assert_allclose(final(run), reference()[-1], rtol=0, atol=1e-9)


def test_cross_site_evaluation_is_added_after_training(tmp_path):
    recipe = add_cross_site_evaluation(FedAvgRecipe(
        "q-cse", initial_model={"w": np.zeros(3)}, min_clients=5, num_rounds=2,
        train_script=str(NP_SCRIPT)))
    assert [w["path"] for w in recipe.workflows] == ["runtime.workflows.FedAvg",
                                                     "runtime.workflows.CrossSiteEval"]
    run = recipe.execute(SimEnv(num_clients=5, workspace_root=tmp_path))
    assert run.get_status() == "COMPLETED", run.get_log()
    matrix = json.loads((Path(run.get_result()) / "cross_site_val.json").read_text())
    assert set(matrix) == {"global"} | {f"site-{k}" for k in range(1, 6)}


def test_recipe_arguments_are_checked_by_name():
    kw = dict(initial_model={"w": np.zeros(3)}, min_clients=2, num_rounds=1, train_script=str(NP_SCRIPT))
    for make, arg in [(lambda: FedOptRecipe("x", optimizer="rmsprop", **kw), "optimizer"),
                      (lambda: FedOptRecipe("x", optimizer="adam", betas=[0.9, 1.5], **kw), "betas[1]"),
                      (lambda: FedProxRecipe("x", mu=-1, **kw), "mu"),
                      (lambda: ScaffoldRecipe("x", aggregator="median", **kw), "aggregator"),
                      (lambda: FedAvgRecipe("x", aggregator="mean", **kw), "aggregator"),
                      (lambda: FedAvgRecipe("x", trim_fraction=0.1, **kw), "trim_fraction"),
                      (lambda: CyclicRecipe("x", order="random", **kw), "order"),
                      (lambda: FedAvgRecipe("x", initial_model=[1, 2], min_clients=1, num_rounds=1,
                                            train_script=str(NP_SCRIPT)), "initial_model")]:
        with pytest.raises(ArgError) as e:
            make()
        assert e.value.arg == arg, (arg, str(e.value))


NO_TORCH = """
import sys, json
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ModuleNotFoundError("No module named 'torch'")
sys.meta_path.insert(0, NoTorch())
import numpy as np
from runtime import recipes as R
out = {}
for name, cls, extra in [("fedavg", R.FedAvgRecipe, {}), ("fedprox", R.FedProxRecipe, {"mu": 0.1}),
                         ("fednova", R.FedNovaRecipe, {}), ("scaffold", R.ScaffoldRecipe, {}),
                         ("fedopt", R.FedOptRecipe, {"optimizer": "yogi", "server_lr": 0.1}),
                         ("krum", R.FedAvgRecipe, {"aggregator": "krum", "num_byzantine": 1}),
                         ("cyclic", R.CyclicRecipe, {"order": "shuffle"})]:
    r = cls("nt-" + name, initial_model={"w": np.zeros(3)}, min_clients=5, num_rounds=2,
            train_script=sys.argv[1], **extra)
    out[name] = r.execute(R.SimEnv(num_clients=5, workspace_root=sys.argv[2])).get_status()
out["torch"] = "torch" in sys.modules
print(json.dumps(out))
"""


def test_numpy_jobs_of_every_algorithm_run_without_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(NP_SCRIPT), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got.pop("torch") is False
    assert set(got.values()) == {"COMPLETED"}, got


def test_flshell_sim_and_show_job_print_the_cross_site_matrix(tmp_path):
    recipe = add_cross_site_evaluation(FedAvgRecipe(
        "q-cse-cli", initial_model={"w": np.zeros(3)}, min_clients=3, num_rounds=2,
        train_script=str(NP_SCRIPT)))
    job = recipe.export(tmp_path / "job")
    ws = tmp_path / "ws"
    proc = subprocess.run([sys.executable, "-m", "flshell.cli", "sim", str(job), "-n", "3", "-q",
                           "-w", str(ws)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    start = lines.index("cross-site loss")
    assert lines[start + 1] == "MODEL site-1 site-2 site-3"
    assert [line.split(" ")[0] for line in lines[start + 3:start + 7]] == ["global", "site-1", "site-2", "site-3"]
    (result,) = ws.glob("server/jobs/*/result")
    matrix = json.loads((result / "cross_site_val.json").read_text())
    assert lines[start + 3].split(" ")[1] == f"{matrix['global']['site-1']['loss']:g}"


def test_the_comparison_example_runs_every_algorithm(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "algorithms" / "compare.py"),
                           "--sites", "4", "--rounds", "3"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[2:]]
    names = [" ".join(r[:-4]) for r in rows[:-1]]
    assert names == ["FedAvg", "FedProx (mu=0.1)", "FedNova", "SCAFFOLD", "FedOpt Adam (lr=0.05)",
                     "FedAvg, median"]
    assert all(0.0 < float(r[-2]) <= 1.0 and r[-4] == "3" for r in rows[:-1])  # accuracy, rounds
