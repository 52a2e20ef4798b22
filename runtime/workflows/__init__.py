"""Server-side workflows: the controller base, FedAvg and its family (FedProx, FedNova,
SCAFFOLD, FedOpt), cyclic relay, evaluation, aggregators (weighted, robust) and persistors."""

from runtime.workflows.aggregators import WeightedAggregator, apply_diff
from runtime.workflows.base import JobAborted, JobFailed, ModelController
from runtime.workflows.cyclic import Cyclic
from runtime.workflows.evaluation import CrossSiteEval, GlobalModelEval
from runtime.workflows.fedavg import FedAvg
from runtime.workflows.fednova import FedNova
from runtime.workflows.fedopt import FedOpt
from runtime.workflows.fedprox import FedProx
from runtime.workflows.persistors import NumpyModelPersistor
from runtime.workflows.robust import KrumAggregator, MedianAggregator, TrimmedMeanAggregator
from runtime.workflows.scaffold import Scaffold

__all__ = [
    "CrossSiteEval",
    "Cyclic",
    "FedAvg",
    "FedNova",
    "FedOpt",
    "FedProx",
    "GlobalModelEval",
    "JobAborted",
    "JobFailed",
    "KrumAggregator",
    "MedianAggregator",
    "ModelController",
    "NumpyModelPersistor",
    "Scaffold",
    "TrimmedMeanAggregator",
    "WeightedAggregator",
    "apply_diff",
]
