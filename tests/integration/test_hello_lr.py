"""hello-lr: federated Newton-Raphson gives exactly the centralised fit on the pooled data, from
the recipe, from its exported job folder, and with each site in its own process."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.jobs.errors import ArgError
from runtime.recipes import SimEnv
from runtime.recipes.lr import FedAvgLrRecipe

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hello-lr"
N_SITES = 4
ROUNDS = 7  # from w = 0 Newton has converged to machine precision on this data by then


def _load_data_module():
    # By path and under its own name: other examples have a data.py of their own.
    spec = importlib.util.spec_from_file_location("hello_lr_data", EXAMPLE / "data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


data = _load_data_module()


def centralised_newton(x: np.ndarray, y: np.ndarray, iterations: int) -> list[np.ndarray]:
    """Plain Newton-Raphson for logistic regression on one data set, from w = 0: the iterates
    w_0, ..., w_iterations (independent of the runtime's code)."""
    xi = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xi.shape[1])
    path = [w]
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(xi @ w)))
        grad = xi.T @ (y - p)                          # of the log-likelihood
        hess = xi.T @ (xi * (p * (1 - p))[:, None])    # of the negative log-likelihood
        w = w + np.linalg.solve(hess, grad)
        path.append(w)
    return path


def pooled_loss_and_accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    z = w[0] + x @ w[1:]
    return float(np.mean(np.log1p(np.exp(z)) - y * z)), float(np.mean((z > 0) == (y == 1)))


def recipe(**kw) -> FedAvgLrRecipe:
    args = dict(name="hello-lr", min_clients=N_SITES, num_rounds=ROUNDS,
                train_script=str(EXAMPLE / "client.py"), num_features=data.NUM_FEATURES)
    args.update(kw)
    return FedAvgLrRecipe(**args)


def load_w(result_dir: str | Path) -> np.ndarray:
    with np.load(Path(result_dir) / "global_model.npz", allow_pickle=False) as saved:
        return saved["w"]


@pytest.fixture(scope="module")
def reference():
    x, y = data.pooled_data(N_SITES)
    return x, y, centralised_newton(x, y, ROUNDS)


def test_federated_fit_equals_centralised_newton_on_pooled_data(tmp_path, reference):
    x, y, path = reference
    run = recipe().execute(SimEnv(num_clients=N_SITES, workspace_root=tmp_path))
    assert run.get_status() == "COMPLETED"
    result = Path(run.get_result())
    w = load_w(result)
    np.testing.assert_allclose(w, path[ROUNDS], rtol=0, atol=1e-6)
    np.testing.assert_allclose(w, path[ROUNDS], rtol=1e-9, atol=1e-12)  # in fact, to rounding

    # It is the maximum-likelihood fit: the pooled gradient vanishes there...
    xi = data.add_intercept(x)
    assert np.linalg.norm(xi.T @ (y - data.sigmoid(xi @ w))) < 1e-8
    # ...and it recovers the coefficients the data was drawn from, roughly (900 samples).
    assert np.max(np.abs(w - data.true_weights())) < 0.35

    # Every round's metrics are the pooled loss and accuracy of the w sent that round (the
    # sites' values weighted by their sample counts), and the loss falls.
    rounds = [json.loads(line) for line in (result.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == list(range(ROUNDS))
    assert all(len(r["sites_ok"]) == N_SITES for r in rounds)
    for r in rounds:
        loss, acc = pooled_loss_and_accuracy(path[r["round"]], x, y)
        assert r["metrics"]["loss"] == pytest.approx(loss, rel=1e-9)
        assert r["metrics"]["accuracy"] == pytest.approx(acc, rel=1e-12)
    losses = [r["metrics"]["loss"] for r in rounds]
    assert losses[0] == pytest.approx(np.log(2))  # w = 0 predicts 1/2 everywhere
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:])) and losses[-1] < 0.5


def test_exported_job_folder_gives_the_same_coefficients(tmp_path, reference):
    export = tmp_path / "job"
    out = subprocess.run([sys.executable, str(EXAMPLE / "job.py"), "--n_clients", str(N_SITES),
                          "--num_rounds", str(ROUNDS), "--export", "--export-dir", str(export)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    config = json.loads((export / "app" / "config" / "config_server.json").read_text())
    assert config["workflows"][0]["path"] == "runtime.workflows.newton_raphson.NewtonRaphson"
    assert {"client.py", "data.py"} <= {p.name for p in (export / "app" / "custom").iterdir()}

    proc = subprocess.run([sys.executable, "-m", "flshell.cli", "sim", str(export), "-n",
                           str(N_SITES), "-q", "-w", str(tmp_path / "ws")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = (tmp_path / "ws" / "server" / "jobs").glob("*/result")
    np.testing.assert_allclose(load_w(result), reference[2][ROUNDS], rtol=0, atol=1e-6)


def test_sites_in_their_own_processes_give_the_same_coefficients(tmp_path, reference):
    run = recipe(num_rounds=3, launch_external_process=True).execute(
        SimEnv(num_clients=N_SITES, workspace_root=tmp_path))
    assert run.get_status() == "COMPLETED"
    np.testing.assert_allclose(load_w(run.get_result()), reference[2][3], rtol=0, atol=1e-6)


def test_damping_takes_partial_newton_steps(tmp_path, reference):
    x, y, _ = reference
    run = recipe(num_rounds=2, damping=0.5).execute(SimEnv(num_clients=N_SITES, workspace_root=tmp_path))
    xi = data.add_intercept(x)
    w = np.zeros(xi.shape[1])
    for _ in range(2):
        p = data.sigmoid(xi @ w)
        w = w + 0.5 * np.linalg.solve(xi.T @ (xi * (p * (1 - p))[:, None]), xi.T @ (y - p))
    np.testing.assert_allclose(load_w(run.get_result()), w, rtol=0, atol=1e-9)


def test_a_site_sending_a_wrong_shape_fails_the_job_naming_it(tmp_path):
    script = tmp_path / "src" / "client.py"
    script.parent.mkdir()
    script.write_text(
        "import numpy as np\nimport runtime.client as flare\n"
        "flare.init()\n"
        "while flare.is_running():\n"
        "    m = flare.receive()\n"
        "    d = len(m.params['w']) - (flare.get_site_name() == 'site-2')\n"
        "    flare.send(flare.FLModel(params={'gradient': np.zeros(d), 'hessian': -np.eye(d)},\n"
        "                             meta={'NUM_STEPS_CURRENT_ROUND': 1}))\n")
    run = recipe(num_rounds=2, min_clients=3, num_features=3, train_script=str(script)).execute(
        SimEnv(num_clients=3, workspace_root=tmp_path / "ws"))
    assert run.get_status() == "FAILED"
    assert 'site-2 sent params["gradient"] with shape (3,), expected (4,)' in run.sim.result().reason


def test_bad_recipe_arguments_are_named():
    for kw, arg in [({"num_features": None}, "num_features"), ({"num_features": 0}, "num_features"),
                    ({"num_rounds": 0}, "num_rounds"), ({"damping": 0.0}, "damping"),
                    ({"l2": -1.0}, "l2"), ({"train_script": "no_such_script.py"}, "train_script")]:
        with pytest.raises(ArgError) as e:
            recipe(**kw)
        assert e.value.arg == arg


@pytest.mark.parametrize("prepared", [False, True], ids=["no-poc", "prepared-not-started"])
def test_poc_run_without_a_running_poc_is_one_line_saying_what_to_do(tmp_path, prepared):
    poc = tmp_path / "poc"
    if prepared:  # a plain-text POC is enough: nothing is started
        made = subprocess.run([sys.executable, "-m", "flshell.cli", "poc", "prepare", "-n", "2",
                               "-w", str(poc), "--insecure"], capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
    proc = subprocess.run([sys.executable, str(EXAMPLE / "job.py"), "--poc", str(poc), "--n_clients", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: ") and str(poc) in line, line
    assert "flshell poc start" in line, line
    if not prepared:
        assert "flshell poc prepare" in line, line
