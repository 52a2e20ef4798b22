"""Recipes: jobs written in Python, run with `recipe.execute(SimEnv(num_clients=8))` or, on a
running POC federation, `recipe.execute(PocEnv())`, or on a provisioned one as an admin,
`recipe.execute(ProdEnv("prod/admin@org.com"))`."""

from runtime.recipes.algorithms import (CyclicRecipe, FedNovaRecipe, FedOptRecipe, FedProxRecipe,
                                        ScaffoldRecipe, add_cross_site_evaluation)
from runtime.recipes.base import Recipe, component
from runtime.recipes.envs import Env, EnvError, Run
from runtime.recipes.poc_env import PocEnv, PocRun, ProdEnv, read_poc_manifest
from runtime.recipes.sim_env import SimEnv, SimRun
from runtime.recipes.fedavg import FedAvgRecipe, NumpyFedAvgRecipe, add_experiment_tracking
from runtime.recipes.lr import FedAvgLrRecipe

__all__ = [
    "CyclicRecipe",
    "Env",
    "EnvError",
    "FedAvgLrRecipe",
    "FedAvgRecipe",
    "FedNovaRecipe",
    "FedOptRecipe",
    "FedProxRecipe",
    "NumpyFedAvgRecipe",
    "PocEnv",
    "PocRun",
    "ProdEnv",
    "Recipe",
    "Run",
    "ScaffoldRecipe",
    "SimEnv",
    "SimRun",
    "add_cross_site_evaluation",
    "add_experiment_tracking",
    "component",
    "read_poc_manifest",
]
