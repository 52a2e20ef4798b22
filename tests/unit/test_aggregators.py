"""FedAvg math: the weighted mean of known params, FULL and DIFF, to 1e-12."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.model import FLModel, ParamsType
from runtime.workflows.aggregators import WeightedAggregator, apply_diff


def _site(name, params, steps, metrics=None, ptype=ParamsType.FULL):
    return FLModel(params=params, params_type=ptype, metrics=metrics,
                   meta={"NUM_STEPS_CURRENT_ROUND": steps, "site_name": name})


def test_weighted_mean_full_float64_exact():
    rng = np.random.default_rng(7)
    ps = [{"a": rng.normal(size=(4, 5)), "b": rng.normal(size=3)} for _ in range(5)]
    ws = [3, 1, 7, 2.5, 11]
    agg = WeightedAggregator()
    for i, (p, w) in enumerate(zip(ps, ws)):
        agg.accept(_site(f"s{i}", p, w))
    out = agg.result()
    for key in ("a", "b"):
        expected = sum(w * p[key] for p, w in zip(ps, ws)) / sum(ws)
        np.testing.assert_allclose(out.params[key], expected, rtol=0, atol=1e-12)
        assert out.params[key].dtype == np.float64
    assert out.meta["num_sites"] == 5 and out.meta["total_weight"] == sum(ws)


def test_hand_computed_small_case():
    agg = WeightedAggregator()
    agg.accept(_site("s1", {"w": np.array([1.0, 2.0])}, 1, {"acc": 0.5}))
    agg.accept(_site("s2", {"w": np.array([4.0, 8.0])}, 3, {"acc": 0.9}))
    out = agg.result()
    np.testing.assert_allclose(out.params["w"], [(1 + 12) / 4, (2 + 24) / 4], atol=1e-12)
    assert out.metrics["acc"] == pytest.approx((0.5 + 2.7) / 4, abs=1e-12)


def test_diff_updates_applied_to_global():
    base = {"w": np.array([10.0, 20.0])}
    agg = WeightedAggregator()
    agg.accept(_site("s1", {"w": np.array([1.0, -1.0])}, 2, ptype=ParamsType.DIFF))
    agg.accept(_site("s2", {"w": np.array([4.0, 2.0])}, 1, ptype=ParamsType.DIFF))
    out = agg.result()
    assert out.params_type == ParamsType.DIFF
    new = apply_diff(base, out.params)
    np.testing.assert_allclose(new["w"], [10 + (2 + 4) / 3, 20 + (-2 + 2) / 3], atol=1e-12)


def test_missing_weight_defaults_to_one_and_int_params_cast_back():
    agg = WeightedAggregator()
    agg.accept(FLModel(params={"n": np.array([1, 2], dtype=np.int64)}, meta={"site_name": "a"}))
    agg.accept(FLModel(params={"n": np.array([3, 5], dtype=np.int64)}, meta={"site_name": "b"}))
    out = agg.result()
    assert out.params["n"].dtype == np.int64
    np.testing.assert_array_equal(out.params["n"], [2, 4])


def test_float32_params_come_back_as_float32():
    agg = WeightedAggregator()
    x = np.full(1_000_000, 1.5, dtype=np.float32)
    agg.accept(_site("a", {"x": x}, 2))
    agg.accept(_site("b", {"x": x * 3}, 2))
    out = agg.result()
    assert out.params["x"].dtype == np.float32
    np.testing.assert_allclose(out.params["x"], 3.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (FLModel(params={"w": np.zeros(3)}, meta={"NUM_STEPS_CURRENT_ROUND": "x", "site_name": "s"}), "must be a number"),
        (FLModel(params={"w": np.zeros(3)}, meta={"NUM_STEPS_CURRENT_ROUND": -1, "site_name": "s"}), ">= 0"),
        (FLModel(params={"w": np.zeros(4)}, meta={"site_name": "s"}), "shape"),
        (FLModel(params={"v": np.zeros(2)}, meta={"site_name": "s"}), "different params"),
        (FLModel(params={"w": np.zeros(2)}, params_type=ParamsType.DIFF, meta={"site_name": "s"}), "DIFF"),
    ],
)
def test_inconsistent_results_are_named(bad, message):
    agg = WeightedAggregator()
    agg.accept(FLModel(params={"w": np.zeros(2)}, meta={"site_name": "first"}))
    with pytest.raises(ValueError, match=message):
        agg.accept(bad)


def test_zero_total_weight_is_an_error():
    agg = WeightedAggregator()
    agg.accept(_site("a", {"w": np.ones(2)}, 0))
    with pytest.raises(ValueError, match="sum of weights is 0"):
        agg.result()


def _wide_results(rng, n=12, shape=(257,)):
    """float32 results whose elements differ a lot in magnitude across sites (as a layer's
    weights near zero do), with integer and fractional weights."""
    out = []
    for i in range(n):
        scale = 10.0 ** rng.integers(-6, 4, size=shape)
        x = (rng.normal(size=shape) * scale).astype(np.float32)
        out.append((x, [1, 3, 7, 0.5, 2.25, 11][i % 6]))
    return out


def test_the_mean_is_the_same_bit_for_bit_whatever_the_arrival_order():
    rng = np.random.default_rng(11)
    results = _wide_results(rng)
    seen, naive = set(), set()
    for _ in range(40):
        order = rng.permutation(len(results))
        agg = WeightedAggregator()
        for i in order:
            x, w = results[i]
            agg.accept(_site(f"s{i}", {"p": x}, w, {"loss": float(x[0])}))
        out = agg.result()
        assert out.params["p"].dtype == np.float32
        seen.add((out.params["p"].tobytes(), out.metrics["loss"], out.meta["total_weight"]))
        acc = np.zeros(results[0][0].shape, dtype=np.float32)  # what arrival-order float32 gives
        for i in order:
            acc += np.float32(results[i][1]) * results[i][0]
        naive.add(acc.tobytes())
    assert len(seen) == 1
    assert len(naive) > 1  # the data is one where the order shows in a plain running sum


def test_the_sum_is_the_exactly_rounded_sum_of_the_terms():
    """Against an independent reference: math.fsum, element by element."""
    import math

    from runtime.workflows.exact_sum import OrderFreeSum

    rng = np.random.default_rng(3)
    results = _wide_results(rng, n=9, shape=(3, 70_001))  # more than one block
    acc = OrderFreeSum((3, 70_001))
    for x, w in results:
        acc.add(x, w)
    got = acc.total()
    flat = [(x.reshape(-1).astype(np.float64) * w) for x, w in results]
    for k in rng.integers(0, got.size, size=400):
        assert got.reshape(-1)[k] == math.fsum(t[k] for t in flat)
    total_w = math.fsum(w for _, w in results)
    mean = acc.mean(total_w).reshape(-1)
    for k in rng.integers(0, got.size, size=400):
        assert mean[k] == pytest.approx(math.fsum(t[k] for t in flat) / total_w, rel=1e-15)


def test_results_are_never_modified():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(64, 33)).astype(np.float32) for _ in range(3)]
    pristine = [x.copy() for x in xs]
    agg = WeightedAggregator()
    for x, w in zip(xs, [1.0, 3.0, 2.0]):
        agg.accept(FLModel(params={"p": x}, meta={"NUM_STEPS_CURRENT_ROUND": w}), take=True)
    x64 = [x.astype(np.float64) for x in xs]
    expected = ((x64[0] + 3 * x64[1] + 2 * x64[2]) / 6).astype(np.float32)
    np.testing.assert_array_equal(agg.result().params["p"], expected)
    for x, p in zip(xs, pristine):
        np.testing.assert_array_equal(x, p)


def test_complex_params_are_refused_by_name():
    agg = WeightedAggregator()
    with pytest.raises(ValueError, match='params\\["z"\\] of dtype complex128'):
        agg.accept(FLModel(params={"z": np.ones(2, dtype=complex)}, meta={"site_name": "s"}))
