"""Every site adds 1 each round, except site-3, which raises in every round: FedAvg needs only 2
results, so the job completes without it."""

import numpy as np

import runtime.client as flare

flare.init()
site = flare.get_site_name()
while flare.is_running():
    model = flare.receive()
    if site == "site-3":
        raise OSError(f"cannot read /data/{site}/train.csv (round {model.current_round + 1})")
    weights = np.asarray(model.params["weights"], dtype=np.float64)
    flare.send(flare.FLModel(params={"weights": weights + 1.0}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
