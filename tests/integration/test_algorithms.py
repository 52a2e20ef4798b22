"""The algorithms, each against a hand-written float64 reference of its paper's formula, on
quadratic sites: site k minimises f_k(w) = 1/2 a_k ||w - t_k||^2 with K_k steps of gradient
descent per round (tests/integration/jobs/quadratic). Every run is a real simulation (the
server's workflow, the sites' script, the wire); the references below are plain loops that
share nothing with the runtime."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from runtime.sim.simulator import Simulator
from tests.integration.conftest import JOBS, copy_job, edit_json

QUAD = JOBS / "quadratic"
SITES = {1: ([1.0, 0.0, -1.0], 1), 2: ([3.0, 2.0, 0.0], 4), 3: ([-2.0, 1.0, 2.0], 9),
         4: ([0.5, -3.0, 1.0], 2), 5: ([2.0, 2.0, 2.0], 6)}  # as the site script has them
N = 5


# ---- running a workflow on the quadratic sites ------------------------------------------------

def simulate(tmp_path: Path, path: str, args: dict, lr: float = 0.05, curvatures=None,
             byzantine: str = "", components: list | None = None, name: str = "run") -> np.ndarray:
    """The global model before each round and after the last, as rows (site-1's view)."""
    job = copy_job(QUAD, tmp_path, name)
    edit_json(job / "app" / "config" / "config_server.json", lambda c: c.update(
        workflows=[{"id": "train", "path": path,
                    "args": {"initial_model": {"w": [0.0, 0.0, 0.0]}, **args}}],
        components=components or []))
    script_args = f"--lr {lr!r}" + (f" --curvatures {','.join(map(repr, curvatures))}" if curvatures else "") \
        + (f" --byzantine {byzantine}" if byzantine else "")
    edit_json(job / "app" / "config" / "config_client.json",
              lambda c: c["executors"][0]["executor"]["args"].update(script_args=script_args))
    sim = Simulator(job, workspace=tmp_path / f"ws-{name}", n_clients=N)
    sim.prepare()
    sim.start()
    res = sim.wait(120)
    assert res.status == "COMPLETED", (res.reason, res.failure_details)
    seen = [json.loads(line) for line in (res.workspace / "site-1" / "jobs" / res.job_id /
                                          "received.jsonl").read_text().splitlines()]
    assert [s["round"] for s in seen] == list(range(len(seen)))
    with np.load(res.result_dir / "global_model.npz", allow_pickle=False) as d:
        final = d["w"]
    return np.array([s["w"] for s in seen] + [final.tolist()])


# ---- the references: the papers' formulas, nothing shared with the runtime ---------------------

def local_gd(x, k, lr, a=1.0, mu=0.0, correction=0.0):
    t, steps = np.array(SITES[k][0]), SITES[k][1]
    w = x.copy()
    for _ in range(steps):
        w = w - lr * (a * (w - t) + mu * (w - x) + correction)
    return w


def curv(curvatures, k):
    return 1.0 if curvatures is None else curvatures[k - 1]


def ref_fedavg(rounds, lr, mu=0.0, curvatures=None):
    """McMahan et al.: the mean of the sites' models weighted by their steps (FedAvg's default
    weight, NUM_STEPS_CURRENT_ROUND); Li et al.'s FedProx adds mu (w - x) to each gradient."""
    x, out = np.zeros(3), []
    for _ in range(rounds):
        out.append(x)
        ws = {k: local_gd(x, k, lr, curv(curvatures, k), mu) for k in SITES}
        total = sum(SITES[k][1] for k in SITES)
        x = sum(SITES[k][1] * ws[k] for k in SITES) / total
    return np.array(out + [x])


def ref_fednova(rounds, lr, curvatures=None):
    """Wang et al. 2020: d_i = (x - w_i)/tau_i, tau_eff = sum p_i tau_i, x <- x - tau_eff sum p_i d_i."""
    x, out = np.zeros(3), []
    for _ in range(rounds):
        out.append(x)
        p = 1.0 / N
        d = {k: (x - local_gd(x, k, lr, curv(curvatures, k))) / SITES[k][1] for k in SITES}
        tau_eff = sum(p * SITES[k][1] for k in SITES)
        x = x - tau_eff * sum(p * d[k] for k in SITES)
    return np.array(out + [x])


def ref_scaffold(rounds, lr, server_lr=1.0):
    """Karimireddy et al. 2020, option II, every site every round."""
    x, c = np.zeros(3), np.zeros(3)
    ci = {k: np.zeros(3) for k in SITES}
    out = []
    for _ in range(rounds):
        out.append(x)
        ys, dcs = {}, {}
        for k in SITES:
            steps = SITES[k][1]
            ys[k] = local_gd(x, k, lr, correction=c - ci[k])
            new = ci[k] - c + (x - ys[k]) / (steps * lr)
            dcs[k], ci[k] = new - ci[k], new
        x = x + server_lr * sum(ys[k] - x for k in SITES) / N
        c = c + sum(dcs.values()) / N
    return np.array(out + [x])


def ref_fedopt(rounds, lr, kind, server_lr, momentum=0.0, nesterov=False, b1=0.9, b2=0.999, eps=None):
    """Reddi et al. 2021: the optimizer steps on the pseudo-gradient g = x - avg, avg = FedAvg's.
    SGD, Adam and Adagrad as torch.optim writes them; Yogi as the paper's Algorithm 2."""
    eps = {"adam": 1e-8, "adagrad": 1e-10, "yogi": 1e-3}.get(kind, 0.0) if eps is None else eps
    x, out = np.zeros(3), []
    m, v, s, buf = np.zeros(3), np.zeros(3), np.zeros(3), None
    v_yogi = np.full(3, eps ** 2)
    for t in range(1, rounds + 1):
        out.append(x)
        ws = {k: local_gd(x, k, lr) for k in SITES}
        avg = sum(SITES[k][1] * ws[k] for k in SITES) / sum(SITES[k][1] for k in SITES)
        g = x - avg
        if kind == "sgd":
            if momentum == 0:
                x = x - server_lr * g
            else:
                buf = g.copy() if buf is None else momentum * buf + g
                x = x - server_lr * (g + momentum * buf if nesterov else buf)
        elif kind == "adam":
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            x = x - server_lr * m_hat / (np.sqrt(v_hat) + eps)
        elif kind == "adagrad":
            s = s + g * g
            x = x - server_lr * g / (np.sqrt(s) + eps)
        else:
            delta = -g
            m = b1 * m + (1 - b1) * delta
            v_yogi = v_yogi - (1 - b2) * delta ** 2 * np.sign(v_yogi - delta ** 2)
            x = x + server_lr * m / (np.sqrt(v_yogi) + eps)
    return np.array(out + [x])


def optimum(curvatures=None):
    a = [curv(curvatures, k) for k in SITES]
    return sum(a[k - 1] * np.array(SITES[k][0]) for k in SITES) / sum(a)


def rel_err(x, target):
    return float(np.linalg.norm(x - target) / np.linalg.norm(target))


# ---- the trajectories -------------------------------------------------------------------------

def test_fedavg_and_fedprox_follow_their_formulas(tmp_path):
    got = simulate(tmp_path, "runtime.workflows.FedAvg", {"num_rounds": 6}, name="fedavg")
    np.testing.assert_allclose(got, ref_fedavg(6, 0.05), rtol=0, atol=1e-9)
    got = simulate(tmp_path, "runtime.workflows.FedProx", {"num_rounds": 6, "mu": 0.5}, name="prox")
    np.testing.assert_allclose(got, ref_fedavg(6, 0.05, mu=0.5), rtol=0, atol=1e-9)
    assert not np.allclose(got, ref_fedavg(6, 0.05), atol=1e-6)  # mu changed the path


def test_scaffold_reaches_the_optimum_where_fedavg_stalls(tmp_path):
    rounds = 80
    got = simulate(tmp_path, "runtime.workflows.Scaffold", {"num_rounds": rounds}, name="scaffold")
    np.testing.assert_allclose(got, ref_scaffold(rounds, 0.05), rtol=0, atol=1e-9)
    assert rel_err(got[-1], optimum()) < 1e-6
    fedavg = ref_fedavg(rounds, 0.05)[-1]
    assert rel_err(fedavg, optimum()) > 0.05  # FedAvg settles where the many-step sites pull it


def test_fednova_is_o_lr_from_the_optimum_while_fedavg_stays_away(tmp_path):
    rounds = 200  # converged to 1e-3 of the error at both step sizes
    errs, fedavg_errs = {}, {}
    for lr in (0.02, 0.01):
        got = simulate(tmp_path, "runtime.workflows.FedNova", {"num_rounds": rounds}, lr=lr,
                       name=f"nova-{lr}")
        np.testing.assert_allclose(got, ref_fednova(rounds, lr), rtol=0, atol=1e-9)
        errs[lr] = rel_err(got[-1], optimum())
        fedavg_errs[lr] = rel_err(ref_fedavg(rounds, lr)[-1], optimum())
    assert 1.9 < errs[0.02] / errs[0.01] < 2.1, errs  # halving lr halves the error: O(lr)
    assert fedavg_errs[0.01] > 10 * errs[0.01] and fedavg_errs[0.01] > 0.5 * fedavg_errs[0.02]


@pytest.mark.parametrize("kind, args", [
    ("adam", {"server_lr": 0.1, "betas": [0.9, 0.99]}),
    ("adagrad", {"server_lr": 0.5}),
    ("yogi", {"server_lr": 0.1, "betas": [0.9, 0.99], "eps": 1e-3}),
    ("sgd", {"server_lr": 0.8, "momentum": 0.5, "nesterov": True}),
])
def test_fedopt_trajectories_follow_their_rules(tmp_path, kind, args):
    got = simulate(tmp_path, "runtime.workflows.FedOpt", {"num_rounds": 10, "optimizer": kind, **args},
                   name=kind)
    ref = ref_fedopt(10, 0.05, kind, args["server_lr"], momentum=args.get("momentum", 0.0),
                     nesterov=args.get("nesterov", False), b1=args.get("betas", [0.9, 0.999])[0],
                     b2=args.get("betas", [0.9, 0.999])[1], eps=args.get("eps"))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_fedopt_sgd_with_lr_1_is_fedavg_bit_for_bit(tmp_path):
    fedavg = simulate(tmp_path, "runtime.workflows.FedAvg", {"num_rounds": 5}, name="avg")
    sgd = simulate(tmp_path, "runtime.workflows.FedOpt", {"num_rounds": 5, "optimizer": "sgd",
                                                          "server_lr": 1.0}, name="sgd1")
    assert np.array_equal(fedavg, sgd)


# ---- robust aggregation -----------------------------------------------------------------------

ROBUST = "runtime.workflows.robust"


@pytest.mark.parametrize("rule, args", [("MedianAggregator", {}),
                                        ("TrimmedMeanAggregator", {"trim_fraction": 0.2}),
                                        ("KrumAggregator", {"num_byzantine": 1})])
def test_robust_rules_keep_the_model_near_the_honest_sites_with_a_liar_among_five(tmp_path, rule, args):
    comp = [{"id": "agg", "path": f"{ROBUST}.{rule}", "args": args}]
    got = simulate(tmp_path, "runtime.workflows.FedAvg", {"num_rounds": 5, "aggregator_id": "agg"},
                   byzantine="site-5", components=comp, name=rule)
    bound = max(np.abs(np.array(SITES[k][0])).max() for k in SITES)  # the honest targets' box
    assert np.abs(got).max() <= bound, got
    plain = simulate(tmp_path, "runtime.workflows.FedAvg", {"num_rounds": 5}, byzantine="site-5",
                     name=f"{rule}-plain")
    assert np.abs(plain[-1]).max() > 1e5  # the weighted mean follows the liar


def ref_robust(rounds, lr, rule, trim=0.2, f=1):
    """Yin et al. 2018 (coordinate median, trimmed mean) and Blanchard et al. 2017 (Krum), unweighted."""
    x, out = np.zeros(3), []
    for _ in range(rounds):
        out.append(x)
        ws = np.array([local_gd(x, k, lr) for k in sorted(SITES)])
        if rule == "MedianAggregator":
            x = np.median(ws, axis=0)
        elif rule == "TrimmedMeanAggregator":
            cut = int(trim * len(ws))
            x = np.sort(ws, axis=0)[cut:len(ws) - cut].mean(axis=0)
        else:
            scores = [sum(sorted(float(np.sum((ws[i] - ws[j]) ** 2)) for j in range(len(ws)) if j != i)
                          [:len(ws) - f - 2]) for i in range(len(ws))]
            x = ws[int(np.argmin(scores))]
    return np.array(out + [x])


@pytest.mark.parametrize("rule, args", [("MedianAggregator", {}),
                                        ("TrimmedMeanAggregator", {"trim_fraction": 0.2}),
                                        ("KrumAggregator", {"num_byzantine": 1})])
def test_robust_rules_follow_their_formulas(tmp_path, rule, args):
    comp = [{"id": "agg", "path": f"{ROBUST}.{rule}", "args": args}]
    got = simulate(tmp_path, "runtime.workflows.FedAvg", {"num_rounds": 4, "aggregator_id": "agg"},
                   components=comp, name=rule)
    np.testing.assert_allclose(got, ref_robust(4, 0.05, rule), rtol=0, atol=1e-9)


# ---- cyclic and evaluation -----------------------------------------------------------------------

def test_cyclic_relays_the_model_from_site_to_site(tmp_path):
    got = simulate(tmp_path, "runtime.workflows.Cyclic", {"num_rounds": 3}, name="cyclic")
    x, ref = np.zeros(3), [np.zeros(3)]
    for _ in range(3):
        for k in sorted(SITES):  # site-1 .. site-5, each from the previous one's model
            x = local_gd(x, k, 0.05)
        ref.append(x)
    np.testing.assert_allclose(got[-1], ref[-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[:-1], ref[:-1], rtol=0, atol=1e-12)  # site-1 starts each round


def test_cross_site_matrix_equals_evaluating_each_model_on_each_site(tmp_path):
    job = copy_job(QUAD, tmp_path, "cse")
    edit_json(job / "app" / "config" / "config_server.json", lambda c: c.update(workflows=[
        {"id": "train", "path": "runtime.workflows.FedAvg",
         "args": {"num_rounds": 2, "initial_model": {"w": [0.0, 0.0, 0.0]}}},
        {"id": "cse", "path": "runtime.workflows.CrossSiteEval", "args": {}}]))
    sim = Simulator(job, workspace=tmp_path / "ws", n_clients=N)
    sim.prepare()
    sim.start()
    res = sim.wait(120)
    assert res.status == "COMPLETED", res.reason
    matrix = json.loads((res.result_dir / "cross_site_val.json").read_text())
    with np.load(res.result_dir / "global_model.npz", allow_pickle=False) as d:
        global_w = d["w"]
    x1 = ref_fedavg(1, 0.05)[-1]  # the model the sites trained from in round 2
    models = {"global": global_w, **{f"site-{k}": local_gd(x1, k, 0.05) for k in SITES}}
    assert set(matrix) == set(models) and all(set(row) == {f"site-{k}" for k in SITES} for row in matrix.values())
    for owner, w in models.items():
        for k in SITES:
            want = 0.5 * float(np.sum((w - np.array(SITES[k][0])) ** 2))
            assert math.isclose(matrix[owner][f"site-{k}"]["loss"], want, rel_tol=1e-12), (owner, k)
