"""FedAvg end to end on the simulator: DIFF updates, weights, early stop, best model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.sim.simulator import Simulator

CLIENT = '''
import re
import runtime.client as flare
flare.init()
k = int(re.search(r"(\\d+)$", flare.get_site_name()).group(1))
MODE = "{mode}"
while flare.is_running():
    m = flare.receive()
    w = m.params["w"]
    update = (w + k) if MODE == "FULL" else (w * 0 + k)
    flare.send(flare.FLModel(params={{"w": update}}, params_type=MODE,
                             metrics={{"score": float(w.mean())}},
                             meta={{"NUM_STEPS_CURRENT_ROUND": k}}))
'''


def make_job(root: Path, mode: str = "FULL", **fedavg_args) -> Path:
    app = root / "job" / "app"
    (app / "config").mkdir(parents=True)
    (app / "custom").mkdir()
    (root / "job" / "meta.json").write_text(json.dumps({"name": "t", "min_clients": 1}))
    args = {"num_rounds": 3, "initial_model": {"w": [0.0, 0.0]}, **fedavg_args}
    (app / "config" / "config_server.json").write_text(json.dumps(
        {"format_version": 2, "workflows": [{"path": "runtime.workflows.FedAvg", "args": args}]}))
    (app / "config" / "config_client.json").write_text(json.dumps(
        {"format_version": 2, "executors": [{"tasks": ["*"], "executor": {
            "path": "runtime.client.executors.ScriptExecutor", "args": {"script": "client.py"}}}]}))
    (app / "custom" / "client.py").write_text(CLIENT.format(mode=mode))
    return root / "job"


def run(job: Path, ws: Path, n: int, **kw):
    sim = Simulator(job, workspace=ws, n_clients=n, **kw)
    sim.prepare()
    sim.start()
    return sim.wait()


def global_model(res, name: str = "global_model") -> np.ndarray:
    with np.load(res.result_dir / f"{name}.npz", allow_pickle=False) as d:
        return d["w"]


def weighted_delta(n: int) -> float:
    ks = np.arange(1, n + 1, dtype=np.float64)
    return float((ks * ks).sum() / ks.sum())  # sum(k * k) / sum(k): weights are k


def test_full_and_diff_give_the_same_weighted_mean(tmp_path):
    n, rounds = 4, 3
    full = run(make_job(tmp_path / "f", "FULL"), tmp_path / "wf", n)
    diff = run(make_job(tmp_path / "d", "DIFF"), tmp_path / "wd", n)
    assert full.ok and diff.ok
    expected = rounds * weighted_delta(n)
    np.testing.assert_allclose(global_model(full), [expected] * 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(global_model(diff), [expected] * 2, rtol=0, atol=1e-12)


def test_stop_condition_ends_early_and_best_model_is_kept(tmp_path):
    n = 3
    d = weighted_delta(n)  # the global mean grows by d each round; sites report the mean received
    job = make_job(tmp_path, "FULL", num_rounds=10, stop_cond=f"score >= {2 * d - 1e-9}",
                   key_metric="score")
    res = run(job, tmp_path / "ws", n)
    assert res.ok
    assert res.rounds_completed == 3  # round 3 reports the mean of the model after 2 rounds
    lines = (res.job_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["round"] for x in lines] == [0, 1, 2]
    np.testing.assert_allclose(global_model(res, "best_global_model"), [2 * d] * 2, atol=1e-12)


def test_num_clients_samples_each_round(tmp_path):
    res = run(make_job(tmp_path, "FULL", num_clients=2, min_clients=2), tmp_path / "ws", 5)
    assert res.ok
    rounds = sorted((res.job_dir / "rounds").glob("round_*.json"))
    picked = [json.loads(p.read_text())["sites_ok"] for p in rounds]
    assert all(len(p) == 2 for p in picked)


def test_min_clients_above_ready_sites_fails_clearly(tmp_path):
    res = run(make_job(tmp_path, "FULL", min_clients=5), tmp_path / "ws", 3)
    assert res.status == "FAILED"
    assert "min_clients=5" in res.reason and "3 sites" in res.reason
