"""Every site adds 1 each round, except site-2, which raises in the second round (index 1)."""

import numpy as np

import runtime.client as flare

flare.init()
site = flare.get_site_name()
while flare.is_running():
    model = flare.receive()
    if site == "site-2" and model.current_round == 1:
        raise ValueError("boom on purpose")
    weights = np.asarray(model.params["weights"], dtype=np.float64)
    print(f"{site}: round {model.current_round} ok")
    flare.send(flare.FLModel(params={"weights": weights + 1.0}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
