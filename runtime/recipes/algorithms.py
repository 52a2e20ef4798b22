"""Recipes of the algorithms beyond FedAvg, each with FedAvgRecipe's core arguments (name,
initial_model as an nn.Module or a dict of numpy arrays, min_clients, num_rounds, train_script,
aggregator, ...) plus its own, and `add_cross_site_evaluation`."""

from __future__ import annotations

from typing import Any

from runtime.jobs.errors import ArgError
from runtime.recipes.base import Recipe, component
from runtime.recipes.fedavg import FedAvgRecipe


class FedProxRecipe(FedAvgRecipe):
    """FedProx (Li et al. 2020): FedAvg whose tasks carry `fedprox_mu`; the site's loss adds
    (mu / 2) ||w - w_global||^2 (runtime.client.algorithms.fedprox_loss / fedprox_grad)."""

    workflow = "runtime.workflows.FedProx"

    def __init__(self, name: str, mu: float = 0.01, **kwargs: Any) -> None:
        from runtime.workflows.fedprox import check_mu

        self.mu = check_mu(mu)
        super().__init__(name, **kwargs)

    def algorithm_args(self) -> dict[str, Any]:
        return {"mu": self.mu}


class FedNovaRecipe(FedAvgRecipe):
    """FedNova (Wang et al. 2020): normalized averaging by each site's local steps (its
    meta["NUM_STEPS_CURRENT_ROUND"], or "fednova_a_i" for momentum SGD)."""

    workflow = "runtime.workflows.FedNova"

    def __init__(self, name: str, **kwargs: Any) -> None:
        if kwargs.get("aggregator") not in (None, "weighted"):
            raise ArgError("aggregator", "none: FedNova averages by its own rule", kwargs["aggregator"])
        super().__init__(name, **kwargs)


class ScaffoldRecipe(FedAvgRecipe):
    """SCAFFOLD (Karimireddy et al. 2020, option II); the sites use
    runtime.client.algorithms.ScaffoldHelper. `server_lr` is the global step size."""

    workflow = "runtime.workflows.Scaffold"

    def __init__(self, name: str, server_lr: float = 1.0, **kwargs: Any) -> None:
        if kwargs.get("aggregator") not in (None, "weighted"):
            raise ArgError("aggregator", "none: SCAFFOLD averages by its own rule", kwargs["aggregator"])
        from runtime.workflows.scaffold import check_server_lr

        self.server_lr = check_server_lr(server_lr)
        super().__init__(name, **kwargs)

    def algorithm_args(self) -> dict[str, Any]:
        return {"server_lr": self.server_lr}


class FedOptRecipe(FedAvgRecipe):
    """FedOpt (Reddi et al. 2021): a server optimizer ("sgd", "adam", "adagrad", "yogi") on the
    pseudo-gradient; see runtime.workflows.fedopt for the rules and defaults."""

    workflow = "runtime.workflows.FedOpt"

    def __init__(self, name: str, optimizer: str = "sgd", server_lr: float = 1.0,
                 momentum: float = 0.0, nesterov: bool = False,
                 betas: tuple[float, float] | list[float] = (0.9, 0.999), eps: float | None = None,
                 **kwargs: Any) -> None:
        from runtime.workflows.fedopt import ServerOptimizer

        ServerOptimizer(optimizer, server_lr, momentum, nesterov, betas, eps)  # the arguments' checks
        self.opt = {"optimizer": optimizer, "server_lr": server_lr, "momentum": momentum,
                    "nesterov": nesterov, "betas": list(betas), "eps": eps}
        super().__init__(name, **kwargs)

    def algorithm_args(self) -> dict[str, Any]:
        return {k: v for k, v in self.opt.items() if v is not None}


class CyclicRecipe(FedAvgRecipe):
    """Cyclic weight transfer: the model relayed from site to site, `order` "fixed" or
    "shuffle" (a new seeded order each round)."""

    workflow = "runtime.workflows.Cyclic"

    def __init__(self, name: str, order: str = "fixed", **kwargs: Any) -> None:
        if order not in ("fixed", "shuffle"):
            raise ArgError("order", '"fixed" or "shuffle"', order)
        for arg in ("aggregator", "num_clients", "stop_cond"):
            if kwargs.get(arg) is not None:
                raise ArgError(arg, "none: a cyclic relay has no such thing", kwargs[arg])
        self.order = order
        super().__init__(name, **kwargs)
        args = self.workflows[0]["args"]
        for dropped in ("key_metric", "stop_cond", "num_clients", "server_expected_format"):
            args.pop(dropped, None)  # FedAvg's, not the relay's

    def algorithm_args(self) -> dict[str, Any]:
        return {"order": self.order}


def add_cross_site_evaluation(recipe: Recipe, include_global: bool = True,
                              timeout: float | None = None) -> Recipe:
    """After training, every site's own model and the global model, each validated on every
    site: the matrix goes to `<result>/cross_site_val.json` (runtime.workflows.CrossSiteEval).
    The sites' script answers `flare.is_evaluate()` and `flare.is_submit_model()` tasks."""
    args: dict[str, Any] = {"include_global": include_global}
    if timeout is not None:
        args["timeout"] = timeout
    recipe.workflows.append(component("runtime.workflows.CrossSiteEval", args, id="cross_site_eval"))
    return recipe
