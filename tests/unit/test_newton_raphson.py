"""NewtonRaphson's server math on hand-made gradients and Hessians: sums, step, ridge, checks."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from runtime.jobs.errors import ArgError
from runtime.model import FLModel
from runtime.workflows.base import JobFailed
from runtime.workflows.newton_raphson import (
    NewtonRaphson,
    NewtonRaphsonAggregator,
    newton_step,
    penalised,
)


def result(site: str, g, h, n: int | None = None, **metrics) -> FLModel:
    meta = {"site_name": site}
    if n is not None:
        meta["NUM_STEPS_CURRENT_ROUND"] = n
    return FLModel(params={"gradient": np.asarray(g, float), "hessian": np.asarray(h, float)},
                   metrics=metrics or None, meta=meta)


def test_aggregator_sums_gradients_and_hessians_and_weights_metrics_by_samples():
    agg = NewtonRaphsonAggregator(2)
    agg.accept(result("site-1", [1.0, 2.0], [[-1.0, 0.5], [0.5, -2.0]], n=10, loss=0.5, accuracy=1.0))
    agg.accept(result("site-2", [3.0, -1.0], [[-2.0, 0.0], [0.0, -1.0]], n=30, loss=0.1, accuracy=0.0))
    np.testing.assert_array_equal(agg.gradient, [4.0, 1.0])   # sums, not means
    np.testing.assert_array_equal(agg.hessian, [[-3.0, 0.5], [0.5, -3.0]])
    assert agg.count == 2 and agg.sites == ["site-1", "site-2"] and agg.total_weight == 40
    m = agg.metrics()
    assert m["loss"] == pytest.approx((10 * 0.5 + 30 * 0.1) / 40)
    assert m["accuracy"] == pytest.approx(0.25)

    agg.reset()
    assert agg.count == 0 and not agg.gradient.any() and not agg.hessian.any() and agg.metrics() == {}


def test_aggregator_weight_defaults_to_one_and_zero_weight_sites_drop_out_of_metrics():
    agg = NewtonRaphsonAggregator(1)
    agg.accept(result("a", [1.0], [[-1.0]], loss=1.0))        # no n_k: weight 1
    agg.accept(result("b", [1.0], [[-1.0]], n=3, loss=3.0))
    agg.accept(result("c", [5.0], [[-5.0]], n=0, loss=99.0))  # still summed into g and H
    assert agg.metrics()["loss"] == pytest.approx((1.0 + 9.0) / 4)
    np.testing.assert_array_equal(agg.gradient, [7.0])


@pytest.mark.parametrize("bad, match", [
    (FLModel(params={"gradient": np.zeros(2)}, meta={"site_name": "site-3"}), "site-3 sent no 'hessian'"),
    (result("site-3", np.zeros(3), np.zeros((2, 2))), r'site-3 sent params\["gradient"\] with shape \(3,\)'),
    (result("site-3", np.zeros(2), np.zeros((2, 3))), r'site-3 sent params\["hessian"\] with shape \(2, 3\)'),
    (result("site-3", [np.nan, 0.0], np.zeros((2, 2))), "non-finite"),
    (result("site-3", np.zeros(2), np.zeros((2, 2)), n=-1), "finite number >= 0"),
])
def test_aggregator_rejects_malformed_results_naming_the_site(bad, match):
    agg = NewtonRaphsonAggregator(2)
    with pytest.raises(ValueError, match=match):
        agg.accept(bad)
    assert agg.count == 0


def test_newton_step_solves_with_the_summed_hessian():
    w = np.array([1.0, -1.0])
    g = np.array([2.0, 4.0])
    h = np.array([[-2.0, 0.0], [0.0, -4.0]])
    np.testing.assert_allclose(newton_step(w, g, h), [2.0, 0.0])              # w - H^-1 g
    np.testing.assert_allclose(newton_step(w, g, h, damping=0.5), [1.5, -0.5])
    h2 = np.array([[-4.0, 1.0], [1.0, -3.0]])
    np.testing.assert_allclose(newton_step(w, g, h2), w - np.linalg.inv(h2) @ g, rtol=1e-12)


def test_newton_step_is_exact_on_a_quadratic():
    """On a concave quadratic one full step lands on the maximiser from anywhere."""
    a = np.array([[-3.0, 1.0, 0.0], [1.0, -2.0, 0.5], [0.0, 0.5, -1.0]])
    b = np.array([1.0, -2.0, 0.5])
    w_star = -np.linalg.solve(a, b)                  # f(w) = w'Aw/2 + b'w, grad = Aw + b
    for w0 in (np.zeros(3), np.array([10.0, -5.0, 2.0])):
        np.testing.assert_allclose(newton_step(w0, a @ w0 + b, a), w_star, atol=1e-12)


def test_ridge_penalises_coefficients_not_the_intercept():
    w = np.array([2.0, 3.0, -1.0])
    g, h = penalised(w, np.zeros(3), -np.eye(3), l2=0.5)
    np.testing.assert_array_equal(g, [0.0, -1.5, 0.5])
    np.testing.assert_array_equal(h, np.diag([-1.0, -1.5, -1.5]))
    g0, h0 = penalised(w, np.ones(3), -np.eye(3), l2=0.0)
    np.testing.assert_array_equal(g0, np.ones(3))
    np.testing.assert_array_equal(h0, -np.eye(3))
    # A singular summed Hessian (a coefficient no sample informs) is solvable with a ridge.
    singular = np.diag([-1.0, -1.0, 0.0])
    with pytest.raises(np.linalg.LinAlgError):
        newton_step(np.zeros(3), np.ones(3), singular)
    np.testing.assert_allclose(newton_step(np.zeros(3), np.ones(3), singular, l2=2.0),
                               [1.0, 1.0 / 3.0, 0.5])  # -diag(-1, -3, -2)^-1 (1, 1, 1)


class Driven(NewtonRaphson):
    """NewtonRaphson with its sites played by `answer(site, w) -> (g, H, n)`."""

    def __init__(self, answer, sites, **kw):
        super().__init__(**kw)
        self.answer = answer
        self.sent: list[np.ndarray] = []
        self.saved: list[FLModel] = []
        self.rounds: list[tuple[int, dict]] = []
        self.bind(SimpleNamespace(sites=list(sites), job=SimpleNamespace(min_clients=1),
                                  abort_event=threading.Event(), logger=SimpleNamespace(
                                      info=lambda m: None, warning=lambda m: None)))

    def send_model_and_wait(self, task_name="train", data=None, targets=None, min_responses=None,
                            timeout=None, callback=None):
        assert callback is not None, "results must be folded in as they arrive"
        w = data.params["w"]
        self.sent.append(w.copy())
        for site in targets:
            g, h, n = self.answer(site, w)
            callback(result(site, g, h, n=n, loss=float(n)))
        return []

    def round_started(self, current_round, total_rounds, targets):
        pass

    def round_completed(self, current_round, metrics=None):
        self.rounds.append((current_round, metrics))

    def save_model(self, model, name="global_model"):
        self.saved.append(model)


def test_controller_takes_newton_steps_on_the_sites_sums():
    # Site k's "log-likelihood" is the quadratic -(w - c_k)' D_k (w - c_k) / 2: the pooled
    # maximiser is (sum D_k)^-1 sum D_k c_k, which one full Newton step reaches.
    d = {"s1": np.diag([1.0, 2.0]), "s2": np.diag([3.0, 1.0])}
    c = {"s1": np.array([1.0, 0.0]), "s2": np.array([-1.0, 4.0])}
    n = {"s1": 10, "s2": 30}
    wf = Driven(lambda s, w: (d[s] @ (c[s] - w), -d[s], n[s]), ["s1", "s2"],
                num_rounds=2, initial_model={"w": [5.0, 5.0]})
    wf.run()
    optimum = np.linalg.solve(d["s1"] + d["s2"], d["s1"] @ c["s1"] + d["s2"] @ c["s2"])
    np.testing.assert_allclose(wf.sent[0], [5.0, 5.0])
    np.testing.assert_allclose(wf.sent[1], optimum, atol=1e-12)
    np.testing.assert_allclose(wf.saved[-1].params["w"], optimum, atol=1e-12)
    assert [r for r, _ in wf.rounds] == [0, 1]
    assert wf.rounds[0][1]["loss"] == pytest.approx((10 * 10 + 30 * 30) / 40)   # weighted by n_k
    assert wf.rounds[1][1]["gradient_norm"] == pytest.approx(0.0, abs=1e-9)


def test_controller_damping_and_default_start():
    wf = Driven(lambda s, w: (np.ones(3), -np.eye(3), 1), ["a", "b"],
                num_rounds=1, num_features=2, damping=0.25)
    wf.run()
    np.testing.assert_array_equal(wf.sent[0], np.zeros(3))       # zeros(num_features + 1)
    np.testing.assert_allclose(wf.saved[0].params["w"], [0.25] * 3)  # 0 - 0.25 * (-2I)^-1 (2,2,2)


def test_controller_fails_the_job_on_a_singular_hessian():
    wf = Driven(lambda s, w: (np.ones(2), np.zeros((2, 2)), 1), ["a"], num_rounds=1, num_features=1)
    with pytest.raises(JobFailed, match="singular.*l2 > 0"):
        wf.run()


@pytest.mark.parametrize("kw, arg", [
    ({"num_rounds": 0, "num_features": 2}, "num_rounds"),
    ({"num_features": 0}, "num_features"),
    ({}, "num_features"),
    ({"num_features": 2, "damping": 0}, "damping"),
    ({"num_features": 2, "damping": -1.0}, "damping"),
    ({"num_features": 2, "l2": -0.1}, "l2"),
    ({"num_features": 2, "min_clients": 0}, "min_clients"),
    ({"initial_model": {"w": [1.0]}}, "initial_model"),
    ({"initial_model": {"w": [0.0, 0.0]}, "num_features": 2}, "initial_model"),
    ({"initial_model": {"v": [0.0, 0.0]}}, "initial_model"),
])
def test_bad_arguments_are_named(kw, arg):
    with pytest.raises(ArgError) as e:
        NewtonRaphson(**kw)
    assert e.value.arg == arg
