"""A workflow written in the job's own custom/ folder: federated coordinate-wise median.

The median ignores a minority of wild updates (site-1 below sends huge ones), where a mean would
follow them. The whole controller is the run() method.
"""

import numpy as np

from runtime.model import FLModel
from runtime.workflows import ModelController


class FedMedian(ModelController):
    def __init__(self, num_rounds: int = 3, initial_model: dict | None = None):
        super().__init__()
        self.num_rounds = num_rounds
        self.initial = {k: np.asarray(v, dtype=np.float64) for k, v in (initial_model or {}).items()}

    def run(self) -> None:
        model = FLModel(params=dict(self.initial))
        for r in range(self.num_rounds):
            self.round_started(r, self.num_rounds, self.sites)
            model.current_round, model.total_rounds = r, self.num_rounds
            results = self.send_model_and_wait("train", model)
            params = {
                key: np.median(np.stack([res.params[key] for res in results]), axis=0)
                for key in model.params
            }
            model = FLModel(params=params, current_round=r, total_rounds=self.num_rounds)
            self.save_model(model)
            self.round_completed(r, {"w0": float(params["w"][0])})
