"""Model persistors: where a workflow's initial model comes from and where it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime.jobs.errors import ArgError
from runtime.model import FLModel, ParamsType
from runtime.wire.npz import load_params_npz


def params_from_json(value: Any, arg: str) -> dict[str, np.ndarray]:
    """{name: nested list of numbers} -> {name: float64/int64 array}; ArgError otherwise."""
    if not isinstance(value, dict) or not value:
        raise ArgError(arg, "an object of name -> array (nested lists of numbers)", value)
    out = {}
    for name, data in value.items():
        try:
            arr = np.asarray(data)
        except ValueError:
            raise ArgError(f"{arg}.{name}", "a rectangular nested list of numbers", data) from None
        if arr.dtype.kind not in "biuf":
            raise ArgError(f"{arg}.{name}", "numbers", data)
        out[name] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr
    return out


class NumpyModelPersistor:
    """Loads the initial params from an .npz file or inline JSON and saves the last model.

    Args:
        initial_model: {name: nested list}, used when `path` is not given or does not exist.
        path: an .npz file read at start; write "{APP_DIR}/model.npz" for one inside the app.
    """

    def __init__(self, initial_model: dict | None = None, path: str | None = None) -> None:
        if initial_model is None and path is None:
            raise ArgError("initial_model", "initial_model or path", None)
        self.initial = params_from_json(initial_model, "initial_model") if initial_model else None
        self.path = path
        self.last: FLModel | None = None

    def load_model(self) -> FLModel:
        if self.path:
            p = Path(self.path)
            if p.exists():
                return FLModel(params=load_params_npz(p), params_type=ParamsType.FULL)
            if self.initial is None:
                raise FileNotFoundError(f"NumpyModelPersistor: no model file {p}")
        return FLModel(params=dict(self.initial), params_type=ParamsType.FULL)

    def save_model(self, model: FLModel) -> None:
        self.last = model


class TorchModelPersistor:
    """The initial torch state_dict: from a file in flshell's wire format (what FedAvgRecipe
    exports), or from a model the job's config builds (as NVFlare's PTFileModelPersistor does).

    No pickle is involved: the file is a header plus raw tensor bytes.

    Args:
        path: the .flp file (write "{APP_DIR}/custom/initial_model.flp" for one in the app).
        model: instead of `path`, a torch module, e.g. an inline component
            {"path": "model.SimpleNetwork", "args": {"seed": 0}} from the app's custom/ code;
            its state_dict is the initial model.
        to: "torch" (default) or "numpy" for a server that keeps numpy arrays.
    """

    def __init__(self, path: str | None = None, model: Any = None, to: str = "torch") -> None:
        if (path is None) == (model is None):
            raise ArgError("path", "either path (an .flp params file) or model (a torch module)",
                           path)
        if path is not None and (not isinstance(path, str) or not path):
            raise ArgError("path", "the path of an .flp params file", path)
        if model is not None and not callable(getattr(model, "state_dict", None)):
            raise ArgError("model", "a torch module (an object with state_dict())", model)
        if to not in ("torch", "numpy"):
            raise ArgError("to", '"torch" or "numpy"', to)
        self.path = path
        self.model = model
        self.to = to

    def load_model(self) -> FLModel:
        if self.model is not None:
            params = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.to == "numpy":
                params = {k: v.cpu().numpy() for k, v in params.items()}
            return FLModel(params=params, params_type=ParamsType.FULL)
        from runtime.wire import decode_params

        p = Path(self.path)
        if not p.is_file():
            raise FileNotFoundError(f"TorchModelPersistor: no model file {p}")
        return FLModel(params=decode_params(p.read_bytes(), to=self.to, bfloat16="float32"),
                       params_type=ParamsType.FULL)

    def save_model(self, model: FLModel) -> None:
        """The job workspace keeps every saved model; nothing more to do here."""
