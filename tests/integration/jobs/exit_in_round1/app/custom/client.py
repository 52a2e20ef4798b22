"""site-2 calls sys.exit(3) in the first round; the other sites train normally."""

import sys

import numpy as np

import runtime.client as flare

flare.init()
site = flare.get_site_name()
while flare.is_running():
    model = flare.receive()
    if site == "site-2" and model.current_round == 0:
        sys.exit(3)
    weights = np.asarray(model.params["weights"], dtype=np.float64)
    flare.send(flare.FLModel(params={"weights": weights + 1.0}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
