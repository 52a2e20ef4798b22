"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020).

The server side is FedAvg; what changes is each site's local objective, which gains the
proximal term (mu / 2) * ||w - w_global||^2. The server says mu in every task's meta
(`fedprox_mu`, NVFlare's key); `runtime.client.algorithms` gives the term to a training loop
(a torch loss term, or the numpy gradient term mu * (w - w_global)).
"""

from __future__ import annotations

from typing import Any

from runtime.jobs.errors import ArgError
from runtime.model import FLModel
from runtime.workflows.fedavg import FedAvg

MU_KEY = "fedprox_mu"


def check_mu(mu: Any) -> float:
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not mu >= 0 or mu == float("inf"):
        raise ArgError("mu", "a number >= 0 (the proximal term's weight)", mu)
    return float(mu)


class FedProx(FedAvg):
    """FedAvg whose tasks carry `fedprox_mu` = `mu` (>= 0; 0 is FedAvg). Every FedAvg argument
    (aggregator_id for a robust rule, num_clients, timeouts...) applies."""

    def __init__(self, mu: float = 0.01, **fedavg_args: Any) -> None:
        super().__init__(**fedavg_args)
        self.mu = check_mu(mu)

    def task_model(self, model: FLModel, current_round: int) -> FLModel:
        task = model.copy_meta()
        task.meta[MU_KEY] = self.mu
        return task
