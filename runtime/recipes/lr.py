"""FedAvgLrRecipe: federated logistic regression with a Newton-Raphson server step.

NVFlare's recipe of the same name: the sites return the gradient and Hessian of their
log-likelihood at the global weights, the server sums them and takes a Newton step
(runtime.workflows.newton_raphson.NewtonRaphson).
"""

from __future__ import annotations

from runtime.jobs.errors import ArgError, check_non_negative_number, check_positive_int
from runtime.recipes.base import Recipe, component

SCRIPT_EXECUTOR = "runtime.client.executors.ScriptExecutor"
WORKFLOW = "runtime.workflows.newton_raphson.NewtonRaphson"


class FedAvgLrRecipe(Recipe):
    """Logistic regression fitted by federated Newton-Raphson.

    Args:
        name: the job name.
        min_clients: sites needed to start, and results needed per round.
        num_rounds: Newton steps.
        train_script: the site script (Client API): receives {"w"}, sends
            {"gradient", "hessian"} with meta NUM_STEPS_CURRENT_ROUND = its sample count.
        train_args: the script's command-line arguments.
        num_features: d (the model is w of d + 1 numbers, intercept first, starting at 0).
        damping: the Newton step size (NVFlare calls it `damping_factor`, accepted too).
        l2: ridge penalty on the coefficients (not the intercept), applied by the server.
        launch_external_process: run each site's script in its own process.
    """

    def __init__(
        self,
        name: str,
        min_clients: int,
        num_rounds: int,
        train_script: str,
        train_args: str = "",
        num_features: int | None = None,
        damping: float = 1.0,
        launch_external_process: bool = False,
        l2: float = 0.0,
        damping_factor: float | None = None,
    ) -> None:
        super().__init__(name, min_clients)
        check_positive_int("num_rounds", num_rounds)
        check_positive_int("num_features", num_features)
        if damping_factor is not None:
            damping = damping_factor
        check_non_negative_number("damping", damping)
        if damping == 0:
            raise ArgError("damping", "a positive number (the Newton step size)", damping)
        check_non_negative_number("l2", l2)
        if not isinstance(train_args, str):
            raise ArgError("train_args", "a string of command-line arguments", train_args)
        if not isinstance(launch_external_process, bool):
            raise ArgError("launch_external_process", "true or false", launch_external_process)
        script = self.add_script(train_script)
        self.workflows.append(component(WORKFLOW, {
            "num_rounds": num_rounds, "min_clients": min_clients, "num_features": num_features,
            "damping": damping, "l2": l2,
        }, id="newton_raphson"))
        self.executors.append({"tasks": ["*"], "executor": component(SCRIPT_EXECUTOR, {
            "script": script, "script_args": train_args,
            "launch_external_process": launch_external_process,
            "params_transfer_type": "FULL",
        })})
