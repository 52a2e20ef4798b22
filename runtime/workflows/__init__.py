"""Server-side workflows: the controller base, FedAvg and its family (FedProx, FedNova,
SCAFFOLD, FedOpt), cyclic relay, evaluation, aggregators (weighted, robust) and persistors.

Each is imported on first use (`runtime.workflows.FedOpt` in a job's config, or a `from ...
import`): a server running FedAvg does not load every algorithm."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "CrossSiteEval": "evaluation", "Cyclic": "cyclic", "FedAvg": "fedavg", "FedNova": "fednova",
    "FedOpt": "fedopt", "FedProx": "fedprox", "GlobalModelEval": "evaluation",
    "JobAborted": "base", "JobFailed": "base", "KrumAggregator": "robust",
    "MedianAggregator": "robust", "ModelController": "base", "NumpyModelPersistor": "persistors",
    "Scaffold": "scaffold", "TrimmedMeanAggregator": "robust", "WeightedAggregator": "aggregators",
    "apply_diff": "aggregators",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime.workflows' has no attribute {name!r}")
    value = getattr(import_module(f"runtime.workflows.{module}"), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
