"""FedAvg over torch state_dicts: weighted mean of FULL and DIFF updates, dtypes kept."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch is optional; .ci/run installs it")

from runtime.model import FLModel, ParamsType  # noqa: E402
from runtime.workflows.aggregators import WeightedAggregator, apply_diff  # noqa: E402


def _net(seed: int) -> dict:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    net(torch.randn(5, 4))  # moves BatchNorm's running stats and num_batches_tracked
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("ptype", [ParamsType.FULL, ParamsType.DIFF])
def test_weighted_mean_of_state_dicts(ptype):
    states, weights = [_net(s) for s in range(3)], [1.0, 2.0, 5.0]
    agg = WeightedAggregator()
    for i, (st, w) in enumerate(zip(states, weights)):
        agg.accept(FLModel(params=st, params_type=ptype,
                           meta={"NUM_STEPS_CURRENT_ROUND": w, "site_name": f"s{i}"}))
    out = agg.result()
    for key in states[0]:
        expected = sum(w * st[key].double() for st, w in zip(states, weights)) / sum(weights)
        got = out.params[key]
        assert got.dtype == states[0][key].dtype
        if got.is_floating_point():
            torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(got, expected.round().to(got.dtype))
    if ptype == ParamsType.DIFF:
        base = _net(99)
        new = apply_diff(base, out.params)
        torch.testing.assert_close(new["0.weight"], base["0.weight"] + out.params["0.weight"])


def test_bfloat16_params_are_averaged_and_stay_bfloat16():
    a = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16)}
    b = {"w": torch.tensor([3.0, 4.0], dtype=torch.bfloat16)}
    agg = WeightedAggregator()
    agg.accept(FLModel(params=a, meta={"site_name": "a"}))
    agg.accept(FLModel(params=b, meta={"site_name": "b"}))
    out = agg.result().params["w"]
    assert out.dtype == torch.bfloat16 and out.tolist() == [2.0, 3.0]


def test_the_mean_of_tensors_is_the_same_bit_for_bit_whatever_the_arrival_order():
    import random

    g = torch.Generator().manual_seed(5)
    results = [((torch.randn(513, generator=g) * 10.0 ** torch.randint(-6, 4, (513,), generator=g))
                .float(), w) for w, _ in zip([1, 3, 7, 0.5, 2.25, 11, 4, 9], range(8))]
    rng = random.Random(2)
    seen = set()
    for _ in range(30):
        order = list(range(len(results)))
        rng.shuffle(order)
        agg = WeightedAggregator()
        for i in order:
            x, w = results[i]
            agg.accept(FLModel(params={"p": x}, meta={"NUM_STEPS_CURRENT_ROUND": w}))
        p = agg.result().params["p"]
        assert p.dtype == torch.float32
        seen.add(p.numpy().tobytes())
    assert len(seen) == 1
