"""Server-side workflows: the controller base, FedAvg, aggregators and persistors."""

from runtime.workflows.aggregators import WeightedAggregator, apply_diff
from runtime.workflows.base import JobAborted, JobFailed, ModelController
from runtime.workflows.fedavg import FedAvg
from runtime.workflows.persistors import NumpyModelPersistor

__all__ = [
    "FedAvg",
    "JobAborted",
    "JobFailed",
    "ModelController",
    "NumpyModelPersistor",
    "WeightedAggregator",
    "apply_diff",
]
