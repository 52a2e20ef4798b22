"""site-2 receives its first task and returns from the script without sending a result."""

import numpy as np

import runtime.client as flare

flare.init()
site = flare.get_site_name()
while flare.is_running():
    model = flare.receive()
    if site == "site-2":
        print(f"{site}: leaving without a result")
        break
    weights = np.asarray(model.params["weights"], dtype=np.float64)
    flare.send(flare.FLModel(params={"weights": weights + 1.0}, meta={"NUM_STEPS_CURRENT_ROUND": 1}))
