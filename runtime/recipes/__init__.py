"""Recipes: jobs written in Python, run with `recipe.execute(SimEnv(num_clients=8))` or, on a
running POC federation, `recipe.execute(PocEnv())`."""

from runtime.recipes.base import Recipe, component
from runtime.recipes.envs import (POC_MANIFEST, Env, EnvError, PocEnv, PocRun, Run, SimEnv, SimRun,
                                  read_poc_manifest)
from runtime.recipes.fedavg import FedAvgRecipe, NumpyFedAvgRecipe, add_experiment_tracking
from runtime.recipes.lr import FedAvgLrRecipe

__all__ = [
    "Env",
    "EnvError",
    "FedAvgLrRecipe",
    "FedAvgRecipe",
    "NumpyFedAvgRecipe",
    "POC_MANIFEST",
    "PocEnv",
    "PocRun",
    "Recipe",
    "Run",
    "SimEnv",
    "SimRun",
    "add_experiment_tracking",
    "component",
    "read_poc_manifest",
]
