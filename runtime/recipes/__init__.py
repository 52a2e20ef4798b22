"""Recipes: jobs written in Python, run with `recipe.execute(SimEnv(num_clients=8))`."""

from runtime.recipes.base import Recipe, component
from runtime.recipes.envs import Env, Run, SimEnv
from runtime.recipes.fedavg import FedAvgRecipe, NumpyFedAvgRecipe, add_experiment_tracking
from runtime.recipes.lr import FedAvgLrRecipe

__all__ = [
    "Env",
    "FedAvgLrRecipe",
    "FedAvgRecipe",
    "NumpyFedAvgRecipe",
    "Recipe",
    "Run",
    "SimEnv",
    "add_experiment_tracking",
    "component",
]
