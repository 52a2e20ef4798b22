"""FedAvg recipes: torch (FedAvgRecipe) and numpy (NumpyFedAvgRecipe)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from runtime.jobs.errors import ArgError, check_positive_int
from runtime.recipes.base import Recipe, component
from runtime.workflows.fedavg import parse_stop_cond

SCRIPT_EXECUTOR = "runtime.client.executors.ScriptExecutor"


class _FedAvgBase(Recipe):
    def __init__(
        self,
        name: str,
        min_clients: int,
        num_rounds: int,
        train_script: str,
        train_args: str = "",
        aggregator: dict | None = None,
        params_transfer_type: str = "FULL",
        launch_external_process: bool = False,
        key_metric: str | None = "accuracy",
        stop_cond: str | None = None,
        num_clients: int | None = None,
    ) -> None:
        super().__init__(name, min_clients)
        check_positive_int("num_rounds", num_rounds)
        transfer = str(getattr(params_transfer_type, "value", params_transfer_type)).upper()
        if transfer not in ("FULL", "DIFF"):
            raise ArgError("params_transfer_type", '"FULL" or "DIFF"', params_transfer_type)
        if stop_cond:
            parse_stop_cond(stop_cond)
        script = self.add_script(train_script)
        args: dict[str, Any] = {"num_rounds": num_rounds, "min_clients": min_clients,
                                "key_metric": key_metric, "stop_cond": stop_cond}
        if num_clients is not None:
            args["num_clients"] = num_clients
        persistor = self._persistor()
        if persistor is not None:
            self.server_components.append(persistor)
            args["persistor_id"] = persistor["id"]
        if aggregator is not None:
            if not isinstance(aggregator, dict) or "path" not in aggregator:
                raise ArgError("aggregator", 'a component {"path": "pkg.mod.Class", "args": {...}}',
                               repr(aggregator))
            self.server_components.append(component(aggregator["path"], aggregator.get("args"),
                                                    id="aggregator"))
            args["aggregator_id"] = "aggregator"
        self.workflows.append(component("runtime.workflows.FedAvg",
                                        {k: v for k, v in args.items() if v is not None},
                                        id="fedavg"))
        self.executors.append({"tasks": ["*"], "executor": component(SCRIPT_EXECUTOR, {
            "script": script, "script_args": train_args,
            "launch_external_process": launch_external_process,
            "params_transfer_type": transfer,
        })})

    def _persistor(self) -> dict | None:
        return None


class FedAvgRecipe(_FedAvgBase):
    """FedAvg for PyTorch. `initial_model` is an nn.Module: the model round 1 sends the sites.

    Its state_dict travels in the job folder in flshell's wire format (no pickle), so every
    dtype (bfloat16 included) arrives bit for bit. Sites always get torch tensors;
    `server_expected_format="numpy"` makes the server keep and aggregate numpy arrays (a
    server host without torch), "torch" (default) keeps tensors end to end.
    """

    def __init__(self, name: str, initial_model: Any, min_clients: int, num_rounds: int,
                 train_script: str, server_expected_format: str = "torch", **kwargs: Any) -> None:
        if server_expected_format not in ("torch", "numpy"):
            raise ArgError("server_expected_format", '"torch" or "numpy"', server_expected_format)
        self.initial_model = initial_model
        self.server_expected_format = server_expected_format
        super().__init__(name, min_clients, num_rounds, train_script, **kwargs)
        # the sites always train on tensors; the server keeps what it was told to expect
        self.workflows[0]["args"]["server_expected_format"] = server_expected_format
        self.executors[0]["executor"]["args"]["params_exchange_format"] = "torch"

    def _persistor(self) -> dict | None:
        state = getattr(self.initial_model, "state_dict", None)
        if not callable(state):
            raise ArgError("initial_model", "a torch nn.Module (the model round 1 sends the sites)",
                           repr(self.initial_model))
        from runtime.wire import encode_params

        self.add_custom_data("initial_model.flp", encode_params(dict(state())))
        return component("runtime.workflows.persistors.TorchModelPersistor",
                         {"path": "{APP_DIR}/custom/initial_model.flp",
                          "to": self.server_expected_format}, id="persistor")


class NumpyFedAvgRecipe(_FedAvgBase):
    """FedAvg for numpy params: `initial_model` is {name: array}."""

    def __init__(self, name: str, min_clients: int, num_rounds: int, train_script: str,
                 initial_model: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.initial_model = initial_model
        super().__init__(name, min_clients, num_rounds, train_script, **kwargs)

    def _persistor(self) -> dict | None:
        if not isinstance(self.initial_model, dict) or not self.initial_model:
            raise ArgError("initial_model", "a dict of name -> numpy array (the model round 1 sends "
                           "the sites)", repr(self.initial_model))
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in self.initial_model.items()})
        self.add_custom_data("initial_model.npz", buf.getvalue())
        return component("runtime.workflows.NumpyModelPersistor",
                         {"path": "{APP_DIR}/custom/initial_model.npz"}, id="persistor")


def add_experiment_tracking(recipe: Recipe, tracking_type: str = "tensorboard") -> Recipe:
    """Keep the sites' SummaryWriter metrics as TensorBoard files under `<result>/tb/`.

    flshell writes them for every job; this call exists so NVFlare recipes port unchanged and
    to reject tracking types that are not supported."""
    if tracking_type != "tensorboard":
        raise ArgError("tracking_type", '"tensorboard"', tracking_type)
    recipe.meta["tracking"] = tracking_type
    return recipe


