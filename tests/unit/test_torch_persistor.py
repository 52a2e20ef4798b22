"""TorchModelPersistor: the initial model from an .flp file or from a module the config builds."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch persistor needs torch (installed by .ci/run)")

from runtime.jobs.errors import ArgError  # noqa: E402
from runtime.wire import encode_params  # noqa: E402
from runtime.workflows.persistors import TorchModelPersistor  # noqa: E402


def net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))


def test_model_gives_its_state_dict_as_a_copy():
    module = net(0)
    model = TorchModelPersistor(model=module).load_model()
    assert model.params.keys() == module.state_dict().keys()
    for key, value in module.state_dict().items():
        assert torch.equal(model.params[key], value)
    with torch.no_grad():
        module[0].weight.add_(1.0)  # the module trains on: the initial model does not move
    assert not torch.equal(model.params["0.weight"], module[0].weight)


def test_model_as_numpy_for_a_numpy_server():
    model = TorchModelPersistor(model=net(1), to="numpy").load_model()
    assert {type(v).__name__ for v in model.params.values()} == {"ndarray"}


def test_file_and_model_give_the_same_params(tmp_path):
    module = net(2)
    path = tmp_path / "initial_model.flp"
    path.write_bytes(encode_params(dict(module.state_dict())))
    a = TorchModelPersistor(path=str(path)).load_model().params
    b = TorchModelPersistor(model=module).load_model().params
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kwargs, arg", [({}, "path"), ({"path": "x.flp", "model": net(0)}, "path"),
                                         ({"model": "model.SimpleNetwork"}, "model"),
                                         ({"path": "x.flp", "to": "jax"}, "to")])
def test_bad_arguments_name_the_argument(kwargs, arg):
    with pytest.raises(ArgError) as e:
        TorchModelPersistor(**kwargs)
    assert e.value.arg == arg
