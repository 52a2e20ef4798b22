"""Recipes of the FedAvg family: FedAvgRecipe and, with the same core arguments, FedProxRecipe,
FedNovaRecipe, ScaffoldRecipe and FedOptRecipe (runtime.recipes.algorithms).

`initial_model` is a torch nn.Module (its state_dict travels in the job folder in flshell's
wire format: no pickle) or a dict of numpy arrays; one class per algorithm serves both.
`aggregator` picks the rule the server averages with: "weighted" (default: by the sites' steps),
"median", "trimmed_mean" (`trim_fraction`), "krum" (`num_byzantine`), or a component dict.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from runtime.jobs.errors import ArgError, check_positive_int
from runtime.recipes.base import Recipe, component
from runtime.workflows.fedavg import parse_stop_cond

SCRIPT_EXECUTOR = "runtime.client.executors.ScriptExecutor"
AGGREGATORS = {"median": "runtime.workflows.robust.MedianAggregator",
               "trimmed_mean": "runtime.workflows.robust.TrimmedMeanAggregator",
               "krum": "runtime.workflows.robust.KrumAggregator"}


def is_torch_module(model: Any) -> bool:
    return callable(getattr(model, "state_dict", None))


class FedAvgRecipe(Recipe):
    """FedAvg (McMahan et al. 2017). `initial_model`: an nn.Module (sites train on tensors;
    `server_expected_format="numpy"` makes the server keep numpy arrays, for a server host
    without torch) or a dict of numpy arrays."""

    workflow = "runtime.workflows.FedAvg"

    def __init__(
        self,
        name: str,
        initial_model: Any = None,
        min_clients: int = 1,
        num_rounds: int = 1,
        train_script: str | None = None,
        train_args: str = "",
        aggregator: str | dict | None = None,
        trim_fraction: float | None = None,
        num_byzantine: int | None = None,
        params_transfer_type: str = "FULL",
        launch_external_process: bool = False,
        key_metric: str | None = "accuracy",
        stop_cond: str | None = None,
        num_clients: int | None = None,
        timeout: float | None = None,
        server_expected_format: str | None = None,
    ) -> None:
        super().__init__(name, min_clients)
        check_positive_int("num_rounds", num_rounds)
        if train_script is None:
            raise ArgError("train_script", "the path of the sites' training script", None)
        transfer = str(getattr(params_transfer_type, "value", params_transfer_type)).upper()
        if transfer not in ("FULL", "DIFF"):
            raise ArgError("params_transfer_type", '"FULL" or "DIFF"', params_transfer_type)
        if stop_cond:
            parse_stop_cond(stop_cond)
        torch_model = is_torch_module(initial_model)
        if server_expected_format is None:
            server_expected_format = "torch" if torch_model else None
        elif server_expected_format not in ("torch", "numpy"):
            raise ArgError("server_expected_format", '"torch" or "numpy"', server_expected_format)
        self.initial_model = initial_model
        self.server_expected_format = server_expected_format
        script = self.add_script(train_script)
        args: dict[str, Any] = {"num_rounds": num_rounds, "min_clients": min_clients,
                                "key_metric": key_metric, "stop_cond": stop_cond,
                                "num_clients": num_clients, "timeout": timeout}
        self.server_components.append(self._persistor())
        args["persistor_id"] = "persistor"
        agg = self._aggregator(aggregator, trim_fraction, num_byzantine)
        if agg is not None:
            self.server_components.append(agg)
            args["aggregator_id"] = "aggregator"
        if server_expected_format is not None:
            args["server_expected_format"] = server_expected_format
        args.update(self.algorithm_args())
        self.workflows.append(component(self.workflow, {k: v for k, v in args.items() if v is not None},
                                        id="train"))
        exec_args: dict[str, Any] = {"script": script, "script_args": train_args,
                                     "launch_external_process": launch_external_process,
                                     "params_transfer_type": transfer}
        if torch_model:  # the sites always train on tensors
            exec_args["params_exchange_format"] = "torch"
        self.executors.append({"tasks": ["*"], "executor": component(SCRIPT_EXECUTOR, exec_args)})

    def algorithm_args(self) -> dict[str, Any]:
        """The workflow's arguments of the algorithm itself (FedProx's mu, FedOpt's optimizer)."""
        return {}

    def _aggregator(self, aggregator: Any, trim_fraction: Any, num_byzantine: Any) -> dict | None:
        if trim_fraction is not None and aggregator != "trimmed_mean":
            raise ArgError("trim_fraction", 'only with aggregator="trimmed_mean"', trim_fraction)
        if num_byzantine is not None and aggregator != "krum":
            raise ArgError("num_byzantine", 'only with aggregator="krum"', num_byzantine)
        if aggregator is None or aggregator == "weighted":
            return None
        if isinstance(aggregator, dict):
            if "path" not in aggregator:
                raise ArgError("aggregator", 'a component {"path": "pkg.mod.Class", "args": {...}}',
                               repr(aggregator))
            return component(aggregator["path"], aggregator.get("args"), id="aggregator")
        if aggregator not in AGGREGATORS:
            raise ArgError("aggregator", '"weighted", "median", "trimmed_mean", "krum" or a component',
                           aggregator)
        args = ({"trim_fraction": trim_fraction} if trim_fraction is not None else {}) | (
            {"num_byzantine": num_byzantine} if num_byzantine is not None else {})
        return component(AGGREGATORS[aggregator], args, id="aggregator")

    def _persistor(self) -> dict:
        model = self.initial_model
        if is_torch_module(model):
            from runtime.wire import encode_params

            self.add_custom_data("initial_model.flp", encode_params(dict(model.state_dict())))
            return component("runtime.workflows.persistors.TorchModelPersistor",
                             {"path": "{APP_DIR}/custom/initial_model.flp",
                              "to": self.server_expected_format or "torch"}, id="persistor")
        if isinstance(model, dict) and model:
            buf = io.BytesIO()
            np.savez(buf, **{k: np.asarray(v) for k, v in model.items()})
            self.add_custom_data("initial_model.npz", buf.getvalue())
            return component("runtime.workflows.NumpyModelPersistor",
                             {"path": "{APP_DIR}/custom/initial_model.npz"}, id="persistor")
        raise ArgError("initial_model", "a torch nn.Module or a dict of name -> numpy array (the "
                       "model round 1 sends the sites)", repr(model))


class NumpyFedAvgRecipe(FedAvgRecipe):
    """FedAvgRecipe with a dict of numpy arrays as `initial_model` (kept for the recipes and
    scripts that name it; FedAvgRecipe takes such a dict too)."""

    def __init__(self, name: str, min_clients: int, num_rounds: int, train_script: str,
                 initial_model: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not isinstance(initial_model, dict) or not initial_model:
            raise ArgError("initial_model", "a dict of name -> numpy array (the model round 1 sends "
                           "the sites)", repr(initial_model))
        super().__init__(name, initial_model=initial_model, min_clients=min_clients,
                         num_rounds=num_rounds, train_script=train_script, **kwargs)


def add_experiment_tracking(recipe: Recipe, tracking_type: str = "tensorboard") -> Recipe:
    """Keep the sites' SummaryWriter metrics as TensorBoard files under `<result>/tb/`.

    flshell writes them for every job; this call exists so NVFlare recipes port unchanged and
    to reject tracking types that are not supported."""
    if tracking_type != "tensorboard":
        raise ArgError("tracking_type", '"tensorboard"', tracking_type)
    recipe.meta["tracking"] = tracking_type
    return recipe
